import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import {
  makeConsentClaims,
  makePatientKey,
  type PatientKeyPair,
  signConsentToken,
  signNonce,
  signPayload
} from "../../src/careagent/CareAgentKeys.js"
import { type ConsentClaims, MAX_PAYLOAD_BYTES } from "../../src/consent/ConsentToken.js"
import * as ConsentVerifier from "../../src/consent/ConsentVerifier.js"
import { Npi } from "../../src/domain/Npi.js"

const ORG = Npi.make("1234567893")
const PROVIDER = Npi.make("1558598797")
const PATIENT = "patient-agent-7"
const NOW = Date.parse("2026-11-22T10:30:00.000Z")

/** Each test gets its own verifier (its own challenges), on a TestClock set to NOW. */
const run = <A, E>(self: Effect.Effect<A, E, ConsentVerifier.ConsentVerifier>) =>
  TestClock.setTime(NOW).pipe(
    Effect.zipRight(self),
    Effect.provide(ConsentVerifier.layer({ organizationNpi: ORG, challengeTtl: "10 seconds" }))
  )

const claimsFor = (overrides: Partial<ConsentClaims> = {}) =>
  Effect.map(
    makeConsentClaims({ patient_agent_id: PATIENT, provider_npi: PROVIDER, consented_actions: ["read:summary"] }),
    (claims): ConsentClaims => ({ ...claims, ...overrides })
  )

const authFor = (key: PatientKeyPair, claims: ConsentClaims): ConsentVerifier.ConsentTokenInput => ({
  ...signConsentToken(key, claims),
  patient_agent_id: PATIENT,
  patient_public_key: key.publicKeyB64u
})

const rawAuth = (key: PatientKeyPair, payload: string | Uint8Array): ConsentVerifier.ConsentTokenInput => ({
  ...signPayload(key, payload),
  patient_agent_id: PATIENT,
  patient_public_key: key.publicKeyB64u
})

/** Verifies and returns the refusal, checking that its message carries no token, signature or key. */
const refusal = (input: ConsentVerifier.ConsentTokenInput) =>
  Effect.gen(function*() {
    const verifier = yield* ConsentVerifier.ConsentVerifier
    const error = yield* Effect.flip(verifier.verifyToken(input))
    for (const secret of [input.consent_token_payload, input.consent_token_signature, input.patient_public_key]) {
      if (secret.length >= 8) assert.notInclude(error.message, secret)
    }
    return error
  })

const reasonOf = (input: ConsentVerifier.ConsentTokenInput) => Effect.map(refusal(input), (e) => e.reason)

describe("ConsentVerifier.verifyToken", () => {
  it.effect("happy path: returns the claims and the imported key", () =>
    run(Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.ConsentVerifier
      const key = yield* makePatientKey
      const claims = yield* claimsFor({ organization_npi: ORG, nonce: "n-1" })
      const verified = yield* verifier.verifyToken(authFor(key, claims))
      assert.deepStrictEqual(verified.claims, claims)
      assert.strictEqual(verified.publicKey.b64u, key.publicKeyB64u)
    })))

  it.effect("accepts unknown extra claims (forward-compatible) and drops them", () =>
    run(Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.ConsentVerifier
      const key = yield* makePatientKey
      const claims = yield* claimsFor()
      const verified = yield* verifier.verifyToken(rawAuth(key, JSON.stringify({ ...claims, purpose: "care" })))
      assert.deepStrictEqual(verified.claims, claims)
    })))

  it.effect("invalid_signature: a token signed by another key", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const other = yield* makePatientKey
      const claims = yield* claimsFor()
      const input = { ...authFor(other, claims), patient_public_key: key.publicKeyB64u }
      assert.strictEqual(yield* reasonOf(input), "invalid_signature")
    })))

  it.effect("invalid_signature: one changed payload byte", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const input = authFor(key, yield* claimsFor())
      const bytes = Buffer.from(input.consent_token_payload, "base64url")
      bytes[5] = bytes[5]! ^ 1
      assert.strictEqual(
        yield* reasonOf({ ...input, consent_token_payload: bytes.toString("base64url") }),
        "invalid_signature"
      )
    })))

  it.effect("expired: exp passes while the TestClock moves", () =>
    run(Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.ConsentVerifier
      const key = yield* makePatientKey
      const input = authFor(key, yield* claimsFor({ exp: NOW / 1000 + 30 }))
      yield* verifier.verifyToken(input)
      yield* TestClock.adjust("29 seconds")
      yield* verifier.verifyToken(input)
      yield* TestClock.adjust("1 second") // now == exp: no longer valid (exp > now)
      const error = yield* refusal(input)
      assert.strictEqual(error.reason, "expired")
      assert.strictEqual(error.message, "the consent token has expired")
    })))

  it.effect("not_yet_valid: iat more than 60 s ahead; 60 s of skew is accepted", () =>
    run(Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.ConsentVerifier
      const key = yield* makePatientKey
      const now = NOW / 1000
      yield* verifier.verifyToken(authFor(key, yield* claimsFor({ iat: now + 60 })))
      assert.strictEqual(yield* reasonOf(authFor(key, yield* claimsFor({ iat: now + 61 }))), "not_yet_valid")
    })))

  it.effect("patient_mismatch: the message names another patient than the token", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const input = { ...authFor(key, yield* claimsFor()), patient_agent_id: "someone-else" }
      assert.strictEqual(yield* reasonOf(input), "patient_mismatch")
    })))

  it.effect("wrong_organization: a token for another organization", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const input = authFor(key, yield* claimsFor({ organization_npi: PROVIDER }))
      assert.strictEqual(yield* reasonOf(input), "wrong_organization")
      const claims = yield* claimsFor()
      const notAnNpi = rawAuth(key, JSON.stringify({ ...claims, organization_npi: "nope" }))
      assert.strictEqual(yield* reasonOf(notAnNpi), "wrong_organization")
    })))

  it.effect("invalid_provider_npi: a provider NPI with a wrong check digit", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const claims = yield* claimsFor()
      const input = rawAuth(key, JSON.stringify({ ...claims, provider_npi: "1234567898" }))
      assert.strictEqual(yield* reasonOf(input), "invalid_provider_npi")
    })))

  it.effect("weak_key: a forged (R = identity, S = 0) signature under the identity key is refused", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const identity = new Uint8Array(32)
      identity[0] = 1
      const forged = new Uint8Array(64)
      forged[0] = 1
      const input = {
        ...authFor(key, yield* claimsFor()),
        consent_token_signature: Buffer.from(forged).toString("base64url"),
        patient_public_key: Buffer.from(identity).toString("base64url")
      }
      const error = yield* refusal(input)
      assert.strictEqual(error.reason, "weak_key")
      assert.match(error.message, /^patient_public_key: a small-order Ed25519 point/)
    })))

  it.effect("malformed: claims that are not JSON, not an object, invalid UTF-8, or break a claim's rule", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const claims = yield* claimsFor()
      const cases: Array<[string | Uint8Array, RegExp]> = [
        ["{not json", /^consent_token_payload: must be base64url of UTF-8 JSON claims$/],
        [new Uint8Array([0x7b, 0xff, 0x7d]), /UTF-8 JSON/],
        ["[1,2]", /the claims must be a JSON object/],
        ["null", /the claims must be a JSON object/],
        [JSON.stringify({ ...claims, consented_actions: [] }), /consented_actions: must be a list of 1 to 32/],
        [JSON.stringify({ ...claims, consented_actions: Array(33).fill("a") }), /consented_actions: must be a list/],
        [JSON.stringify({ ...claims, consented_actions: ["ok", "x".repeat(129)] }), /consented_actions\.1: must be/],
        [JSON.stringify({ ...claims, iat: 1.5 }), /iat: must be a non-negative integer/],
        [JSON.stringify({ ...claims, exp: "soon" }), /exp: must be a non-negative integer/],
        [JSON.stringify({ ...claims, patient_agent_id: "tab\there" }), /patient_agent_id: must be 1 to 256 printable/],
        [JSON.stringify({ ...claims, provider_npi: undefined }), /provider_npi: is required/]
      ]
      for (const [payload, expected] of cases) {
        const error = yield* refusal(rawAuth(key, payload))
        assert.strictEqual(error.reason, "malformed", String(payload))
        assert.match(error.message, expected)
      }
      // The offending value is never echoed back.
      const echoed = yield* refusal(rawAuth(key, JSON.stringify({ ...claims, iat: "SECRET-ISH-VALUE" })))
      assert.notInclude(echoed.message, "SECRET-ISH-VALUE")
    })))

  it.effect("malformed: truncated, padded, non-base64url or wrong-length signature, key and payload", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const input = authFor(key, yield* claimsFor())
      const sig = input.consent_token_signature
      const pub = input.patient_public_key
      const payload = input.consent_token_payload
      const bad: Array<[Partial<ConsentVerifier.ConsentTokenInput>, RegExp]> = [
        [{ consent_token_signature: sig.slice(0, 85) }, /^consent_token_signature: must be an Ed25519 signature/],
        [{ consent_token_signature: sig + "==" }, /^consent_token_signature:/],
        [{ consent_token_signature: "/" + sig.slice(1) }, /^consent_token_signature:/],
        [{ consent_token_signature: Buffer.from(sig, "base64url").toString("base64") }, /^consent_token_signature:/],
        [{ patient_public_key: pub.slice(0, 42) }, /^patient_public_key: must be an Ed25519 public key/],
        [{ patient_public_key: pub + "=" }, /^patient_public_key:/],
        [{ patient_public_key: "*" + pub.slice(1) }, /^patient_public_key:/],
        [{ consent_token_payload: payload + "=" }, /^consent_token_payload: must be unpadded base64url/],
        [{ consent_token_payload: payload.slice(0, 10) + "+" + payload.slice(11) }, /^consent_token_payload:/],
        [{ consent_token_payload: payload + " " }, /^consent_token_payload: must be unpadded base64url/],
        [{ consent_token_payload: payload.slice(0, 20) + "." + payload.slice(20) }, /^consent_token_payload:/],
        [{ consent_token_payload: "" }, /^consent_token_payload: must be 1 to/],
        [{ consent_token_payload: "A".repeat(Math.ceil(MAX_PAYLOAD_BYTES * 4 / 3) + 4) }, /must be 1 to 10923/]
      ]
      for (const [change, expected] of bad) {
        const error = yield* refusal({ ...input, ...change })
        assert.strictEqual(error.reason, "malformed", JSON.stringify(change))
        assert.match(error.message, expected)
      }
    })))

  it.effect("does not parse the payload as JSON before the signature verifies", () =>
    run(Effect.gen(function*() {
      const key = yield* makePatientKey
      const other = yield* makePatientKey
      // Not JSON at all, but signed by another key: the signature is what fails.
      const input = { ...rawAuth(other, "{not json"), patient_public_key: key.publicKeyB64u }
      assert.strictEqual(yield* reasonOf(input), "invalid_signature")
    })))
})

describe("ConsentVerifier at a given time (the handshake's plain calls)", () => {
  it.effect("verifyTokenAt, issueChallengeAt, answerChallengeAt: the same rules at the time they are given, whatever the Clock says: a token valid now is expired an hour later; a challenge answered after its TTL is challenge_expired, within it accepted", () =>
    run(Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.ConsentVerifier
      const key = yield* makePatientKey
      const input = authFor(key, yield* claimsFor({ iat: NOW / 1000, exp: NOW / 1000 + 3600 }))
      const verified = verifier.verifyTokenAt(input, NOW)
      assert.isTrue(Either.isRight(verified))
      const later = verifier.verifyTokenAt(input, NOW + 3_600_000)
      assert.isTrue(Either.isLeft(later) && later.left.reason === "expired")
      const publicKey = Either.getOrThrow(verified).publicKey
      const late = verifier.issueChallengeAt("conn-1", publicKey, NOW)
      assert.strictEqual(DateTime.toEpochMillis(late.expiresAt), NOW + 10_000)
      const refused = verifier.answerChallengeAt("conn-1", late.nonce, signNonce(key, late.nonce), NOW + 10_000)
      assert.isTrue(Either.isLeft(refused) && refused.left.reason === "challenge_expired")
      const fresh = verifier.issueChallengeAt("conn-2", publicKey, NOW)
      assert.isTrue(
        Either.isRight(verifier.answerChallengeAt("conn-2", fresh.nonce, signNonce(key, fresh.nonce), NOW + 9_999))
      )
    })))
})

describe("ConsentVerifier challenges", () => {
  const setup = Effect.gen(function*() {
    const verifier = yield* ConsentVerifier.ConsentVerifier
    const key = yield* makePatientKey
    const { publicKey } = yield* verifier.verifyToken(authFor(key, yield* claimsFor()))
    return { verifier, key, publicKey }
  })

  it.effect("issues 64 lowercase hex nonces expiring after the TTL, and accepts the key holder's answer", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const challenge = yield* verifier.issueChallenge("conn-1", publicKey)
      assert.match(challenge.nonce, /^[0-9a-f]{64}$/)
      assert.strictEqual(DateTime.toEpochMillis(challenge.expiresAt), NOW + 10_000)
      const again = yield* verifier.issueChallenge("conn-2", publicKey)
      assert.notStrictEqual(again.nonce, challenge.nonce)
      yield* verifier.answerChallenge("conn-1", challenge.nonce, signNonce(key, challenge.nonce))
    })))

  it.effect("single use: a second answer to the same nonce is challenge_unknown", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      const signed = signNonce(key, nonce)
      yield* verifier.answerChallenge("conn-1", nonce, signed)
      const error = yield* Effect.flip(verifier.answerChallenge("conn-1", nonce, signed))
      assert.strictEqual(error.reason, "challenge_unknown")
    })))

  it.effect("bound to its connection: another connection id fails, and does not cancel it", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      const signed = signNonce(key, nonce)
      const error = yield* Effect.flip(verifier.answerChallenge("conn-2", nonce, signed))
      assert.strictEqual(error.reason, "challenge_unknown")
      yield* verifier.answerChallenge("conn-1", nonce, signed)
    })))

  it.effect("expired: an answer at expires_at is challenge_expired (AUTH_TIMEOUT), and the nonce is spent", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(verifier.answerChallenge("conn-1", nonce, signNonce(key, nonce)))
      assert.strictEqual(error.reason, "challenge_expired")
      assert.strictEqual(yield* verifier.outstandingChallenges, 0)
    })))

  it.effect("challenge_failed: signed by another key, or over the hex text instead of the raw bytes", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const other = yield* makePatientKey
      const first = yield* verifier.issueChallenge("conn-1", publicKey)
      const e1 = yield* Effect.flip(verifier.answerChallenge("conn-1", first.nonce, signNonce(other, first.nonce)))
      assert.strictEqual(e1.reason, "challenge_failed")
      const second = yield* verifier.issueChallenge("conn-1", publicKey)
      const overText = signPayload(key, second.nonce).consent_token_signature
      const e2 = yield* Effect.flip(verifier.answerChallenge("conn-1", second.nonce, overText))
      assert.strictEqual(e2.reason, "challenge_failed")
      // A failed answer spends the nonce too: no second guess.
      const e3 = yield* Effect.flip(verifier.answerChallenge("conn-1", second.nonce, signNonce(key, second.nonce)))
      assert.strictEqual(e3.reason, "challenge_unknown")
    })))

  it.effect("malformed signed_nonce is refused as malformed", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      const error = yield* Effect.flip(verifier.answerChallenge("conn-1", nonce, signNonce(key, nonce) + "="))
      assert.strictEqual(error.reason, "malformed")
      assert.match(error.message, /^signed_nonce: must be an Ed25519 signature/)
    })))

  it.effect("concurrent answers to the same nonce: exactly one succeeds", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      const signed = signNonce(key, nonce)
      const results = yield* Effect.all(
        Array.from({ length: 16 }, () => Effect.either(verifier.answerChallenge("conn-1", nonce, signed))),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.filter(Either.isRight).length, 1)
      for (const result of results) {
        if (Either.isLeft(result)) assert.strictEqual(result.left.reason, "challenge_unknown")
      }
    })))

  it.effect("a new challenge replaces the connection's earlier one; forget drops it", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const first = yield* verifier.issueChallenge("conn-1", publicKey)
      const second = yield* verifier.issueChallenge("conn-1", publicKey)
      assert.strictEqual(yield* verifier.outstandingChallenges, 1)
      const stale = yield* Effect.flip(verifier.answerChallenge("conn-1", first.nonce, signNonce(key, first.nonce)))
      assert.strictEqual(stale.reason, "challenge_unknown")
      yield* verifier.forget("conn-1")
      assert.strictEqual(yield* verifier.outstandingChallenges, 0)
      const gone = yield* Effect.flip(verifier.answerChallenge("conn-1", second.nonce, signNonce(key, second.nonce)))
      assert.strictEqual(gone.reason, "challenge_unknown")
    })))

  it.effect("challenges nobody forgot are swept once a TTL past their expiry, not before", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const old = yield* verifier.issueChallenge("conn-1", publicKey)
      yield* TestClock.adjust("15 seconds")
      yield* verifier.issueChallenge("conn-2", publicKey)
      const late = yield* Effect.flip(verifier.answerChallenge("conn-1", old.nonce, signNonce(key, old.nonce)))
      assert.strictEqual(late.reason, "challenge_expired") // still known 5 s after expiry
      yield* verifier.issueChallenge("conn-3", publicKey)
      yield* TestClock.adjust("25 seconds")
      yield* verifier.issueChallenge("conn-4", publicKey)
      assert.strictEqual(yield* verifier.outstandingChallenges, 1)
    })))

  it.effect("a challenge answer waiting on a fiber sees the TestClock like everything else", () =>
    run(Effect.gen(function*() {
      const { key, publicKey, verifier } = yield* setup
      const { nonce } = yield* verifier.issueChallenge("conn-1", publicKey)
      const fiber = yield* Effect.fork(
        Effect.delay(verifier.answerChallenge("conn-1", nonce, signNonce(key, nonce)), "11 seconds")
      )
      yield* TestClock.adjust("11 seconds")
      const exit = yield* Fiber.await(fiber)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.isTrue(Option.isSome(failure) && failure.value.reason === "challenge_expired")
    })))
})

describe("ConsentVerifier.layerConfig", () => {
  const withEnv = (entries: Record<string, string>) =>
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))

  it.effect("reads NEURON_ORGANIZATION_NPI and NEURON_AUTH_TIMEOUT_MS (default 10000)", () =>
    Effect.gen(function*() {
      const ttlOf = (entries: Record<string, string>) =>
        Effect.gen(function*() {
          const verifier = yield* ConsentVerifier.ConsentVerifier
          const key = yield* makePatientKey
          const { publicKey } = yield* verifier.verifyToken(authFor(key, yield* claimsFor()))
          const { expiresAt } = yield* verifier.issueChallenge("c", publicKey)
          assert.strictEqual(verifier.organizationNpi, ORG)
          return DateTime.toEpochMillis(expiresAt) - NOW
        }).pipe(Effect.provide(ConsentVerifier.layerConfig), withEnv(entries))
      yield* TestClock.setTime(NOW)
      assert.strictEqual(yield* ttlOf({ NEURON_ORGANIZATION_NPI: ORG, NEURON_AUTH_TIMEOUT_MS: "2500" }), 2500)
      assert.strictEqual(yield* ttlOf({ NEURON_ORGANIZATION_NPI: ORG }), 10_000)
    }))

  it.effect("refuses an invalid organization NPI or a non-positive timeout, naming the variable", () =>
    Effect.gen(function*() {
      const build = (entries: Record<string, string>) =>
        Effect.flip(Effect.provide(ConsentVerifier.ConsentVerifier, ConsentVerifier.layerConfig).pipe(withEnv(entries)))
      assert.include(String(yield* build({ NEURON_ORGANIZATION_NPI: "1234567898" })), "NEURON_ORGANIZATION_NPI")
      assert.include(String(yield* build({})), "NEURON_ORGANIZATION_NPI")
      const zero = yield* build({ NEURON_ORGANIZATION_NPI: ORG, NEURON_AUTH_TIMEOUT_MS: "0" })
      assert.include(String(zero), "NEURON_AUTH_TIMEOUT_MS")
    }))
})
