/**
 * ConsentVerifier: the Neuron's side of consent (PROTOCOL.md section 2). It authenticates a patient's
 * consent token, then proves the patient holds the key with a single-use challenge.
 *
 * Order of the token checks: only cheap shape checks (lengths, alphabet) come before the signature; the
 * payload is not parsed as JSON until the patient's key has authenticated it, so an attacker's JSON is never
 * parsed, and the payload is capped (`MAX_PAYLOAD_BYTES`) to bound the work done before that.
 *
 * The operations are untraced on purpose: a span measured 15-30 µs per call here, against about 60 µs for
 * an Ed25519 verification; the handshake's own span covers them.
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { isValidNpi, Npi } from "../domain/Npi.js"
import { ChallengeBook } from "./Challenges.js"
import { ConsentError } from "./ConsentError.js"
import { type ConsentClaims, decodeClaims, MAX_PAYLOAD_TEXT } from "./ConsentToken.js"
import { decodeSignature, importPatientKey, type PatientKey, verify } from "./Ed25519.js"

/** How far in the future a token's `iat` may be (clock skew between the patient and the Neuron). */
export const IAT_SKEW_SECONDS = 60

/** The consent fields of a `handshake.auth` message, as received. */
export interface ConsentTokenInput {
  readonly consent_token_payload: string
  readonly consent_token_signature: string
  readonly patient_agent_id: string
  readonly patient_public_key: string
}

/** A consent token that passed every rule, and the key it was verified with. */
export interface VerifiedConsent {
  readonly claims: ConsentClaims
  readonly publicKey: PatientKey
}

/** A challenge as the handshake sends it. */
export interface IssuedChallenge {
  /** 64 lowercase hex characters: 32 fresh random bytes. */
  readonly nonce: string
  readonly expiresAt: DateTime.Utc
}

/** Options for `make` / `layer`. */
export interface ConsentVerifierOptions {
  /** This Neuron's organization: a token naming another is refused. */
  readonly organizationNpi: Npi
  /** How long a challenge may be answered (the auth timeout, 10 s by default). */
  readonly challengeTtl?: Duration.DurationInput
}

/** Verifies consent tokens and runs the key-possession challenge. */
export class ConsentVerifier extends Context.Tag("neuron/ConsentVerifier")<ConsentVerifier, {
  readonly organizationNpi: Npi
  /** Checks a token against every rule of section 2; fails with the first rule it breaks. */
  readonly verifyToken: (input: ConsentTokenInput) => Effect.Effect<VerifiedConsent, ConsentError>
  /** Issues a fresh nonce for `connectionId` (replacing any earlier one), answerable by `publicKey` until `expiresAt`. */
  readonly issueChallenge: (connectionId: string, publicKey: PatientKey) => Effect.Effect<IssuedChallenge>
  /** Consumes `nonce` (single use, this connection only) and checks `signedNonce` over its 32 raw bytes. */
  readonly answerChallenge: (
    connectionId: string,
    nonce: string,
    signedNonce: string
  ) => Effect.Effect<void, ConsentError>
  /**
   * The same three operations at a given time (Clock milliseconds), as plain calls: the handshake server runs
   * them on the socket's own callbacks, without a fiber (BENCHMARKS.md, issue 11). An `Either` is an `Effect`
   * too: `yield*` works on the results.
   */
  readonly verifyTokenAt: (input: ConsentTokenInput, nowMillis: number) => Either.Either<VerifiedConsent, ConsentError>
  readonly issueChallengeAt: (connectionId: string, publicKey: PatientKey, nowMillis: number) => IssuedChallenge
  readonly answerChallengeAt: (
    connectionId: string,
    nonce: string,
    signedNonce: string,
    nowMillis: number
  ) => Either.Either<void, ConsentError>
  /** Drops the outstanding challenge of a connection whose socket closed. */
  readonly forget: (connectionId: string) => Effect.Effect<void>
  /** `forget` in plain code (a refused handshake ends without a fiber). */
  readonly forgetNow: (connectionId: string) => void
  /** How many challenges are outstanding. */
  readonly outstandingChallenges: Effect.Effect<number>
}>() {}

const fail = (reason: ConsentError["reason"], message: string) => Either.left(new ConsentError({ reason, message }))

/** Builds the verifier; each instance keeps its own challenges. */
export const make = (options: ConsentVerifierOptions): Effect.Effect<ConsentVerifier["Type"]> =>
  Effect.sync(() => {
    const organizationNpi = options.organizationNpi
    const book = new ChallengeBook(Duration.toMillis(options.challengeTtl ?? Duration.seconds(10)))

    const verifyTokenAt = (
      input: ConsentTokenInput,
      nowMillis: number
    ): Either.Either<VerifiedConsent, ConsentError> => {
      const payloadText = input.consent_token_payload
      if (typeof payloadText !== "string" || payloadText.length === 0 || payloadText.length > MAX_PAYLOAD_TEXT) {
        return fail("malformed", `consent_token_payload: must be 1 to ${MAX_PAYLOAD_TEXT} base64url characters`)
      }
      const signature = decodeSignature(input.consent_token_signature, "consent_token_signature")
      if (Either.isLeft(signature)) return Either.left(signature.left)
      const publicKey = importPatientKey(input.patient_public_key)
      if (Either.isLeft(publicKey)) return Either.left(publicKey.left)
      // Decoded only now that its length is bounded. Node's decoder is lenient (TRAPS.md): re-encoding gives
      // back the same text only when it was canonical (no padding, no `+` `/`, no stray characters).
      const payload = Buffer.from(payloadText, "base64url")
      if (payload.toString("base64url") !== payloadText) {
        return fail("malformed", "consent_token_payload: must be unpadded base64url (RFC 4648 §5)")
      }
      if (!verify(publicKey.right, payload, signature.right)) {
        return fail("invalid_signature", "consent_token_signature does not verify under patient_public_key")
      }
      const decoded = decodeClaims(payload)
      if (Either.isLeft(decoded)) return Either.left(decoded.left)
      const claims = decoded.right
      if (claims.patient_agent_id !== input.patient_agent_id) {
        return fail("patient_mismatch", "patient_agent_id does not match the consent token's")
      }
      if (claims.exp * 1000 <= nowMillis) {
        return fail("expired", "the consent token has expired")
      }
      if (claims.iat * 1000 > nowMillis + IAT_SKEW_SECONDS * 1000) {
        return fail("not_yet_valid", "the consent token is issued in the future (iat)")
      }
      if (claims.organization_npi !== undefined && claims.organization_npi !== organizationNpi) {
        return fail("wrong_organization", "the consent token is for another organization")
      }
      if (!isValidNpi(claims.provider_npi)) {
        return fail("invalid_provider_npi", "the consent token's provider_npi is not a valid NPI")
      }
      const { organization_npi, provider_npi, ...rest } = claims
      return Either.right({
        claims: {
          ...rest,
          provider_npi: Npi.make(provider_npi, { disableValidation: true }),
          ...(organization_npi === undefined ? {} : { organization_npi: organizationNpi })
        },
        publicKey: publicKey.right
      })
    }

    const issueChallengeAt = (connectionId: string, publicKey: PatientKey, nowMillis: number): IssuedChallenge => {
      const challenge = book.issue(connectionId, publicKey, nowMillis)
      return { nonce: challenge.nonce, expiresAt: DateTime.unsafeMake(challenge.expiresAtMillis) }
    }

    const answerChallengeAt = (
      connectionId: string,
      nonce: string,
      signedNonce: string,
      nowMillis: number
    ): Either.Either<void, ConsentError> => {
      // Taken out before anything else is checked: a nonce gets exactly one answer, right or wrong.
      const challenge = book.take(connectionId, nonce)
      if (challenge === undefined) {
        return fail(
          "challenge_unknown",
          "the challenge is unknown, already answered, or was issued to another connection"
        )
      }
      if (nowMillis >= challenge.expiresAtMillis) {
        return fail("challenge_expired", "the challenge expired before it was answered")
      }
      const signature = decodeSignature(signedNonce, "signed_nonce")
      if (Either.isLeft(signature)) return Either.left(signature.left)
      if (!verify(challenge.key, challenge.bytes, signature.right)) {
        return fail("challenge_failed", "signed_nonce does not verify under patient_public_key")
      }
      return Either.void
    }

    return ConsentVerifier.of({
      organizationNpi,
      verifyToken: (input) => Effect.flatMap(Clock.currentTimeMillis, (now) => verifyTokenAt(input, now)),
      issueChallenge: (connectionId, publicKey) =>
        Effect.map(Clock.currentTimeMillis, (now) => issueChallengeAt(connectionId, publicKey, now)),
      answerChallenge: (connectionId, nonce, signedNonce) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => answerChallengeAt(connectionId, nonce, signedNonce, now)),
      verifyTokenAt,
      issueChallengeAt,
      answerChallengeAt,
      forget: (connectionId) => Effect.sync(() => book.forget(connectionId)),
      forgetNow: (connectionId) => book.forget(connectionId),
      outstandingChallenges: Effect.sync(() => book.size)
    })
  })

/** The verifier with the given options. */
export const layer = (options: ConsentVerifierOptions): Layer.Layer<ConsentVerifier> =>
  Layer.effect(ConsentVerifier, make(options))

/** The options from the environment: `NEURON_ORGANIZATION_NPI` and `NEURON_AUTH_TIMEOUT_MS`. */
export const optionsConfig: Config.Config<ConsentVerifierOptions> = Config.all({
  organizationNpi: Schema.Config("NEURON_ORGANIZATION_NPI", Npi).pipe(
    Config.withDescription("the organization's NPI: consent tokens naming another organization are refused")
  ),
  challengeTtl: Config.integer("NEURON_AUTH_TIMEOUT_MS").pipe(
    Config.validate({ message: "must be a positive number of milliseconds", validation: (ms) => ms > 0 }),
    Config.withDefault(10_000),
    Config.map(Duration.millis),
    Config.withDescription("handshake auth timeout in milliseconds; also how long a challenge may be answered")
  )
})

/** The verifier configured from the environment. */
export const layerConfig: Layer.Layer<ConsentVerifier, ConfigError.ConfigError> = Layer.effect(
  ConsentVerifier,
  Effect.flatMap(optionsConfig, make)
)
