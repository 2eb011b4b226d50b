/**
 * The patient's side of consent: an Ed25519 key pair, a signed consent token, a signed challenge nonce.
 * The CareAgent client's WebSocket half, the tests and the benchmarks build on these.
 *
 * Keys are made from 32 random bytes imported as PKCS#8, never with `generateKeyPairSync`: a load generator
 * that made many keys that way and signed with them hung on Node 20 (TRAPS.md).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign } from "node:crypto"
import { NONCE_PATTERN } from "../consent/Challenges.js"
import { type ConsentClaims, encodePayload } from "../consent/ConsentToken.js"
import type { Npi } from "../domain/Npi.js"
import { revocationMessage } from "../protocol/ConsentRevocation.js"

/** A patient's Ed25519 key pair. */
export interface PatientKeyPair {
  readonly privateKey: KeyObject
  /** The 32 raw public-key bytes. */
  readonly publicKey: Uint8Array
  /** The public key as the handshake sends it (`patient_public_key`, 43 base64url characters). */
  readonly publicKeyB64u: string
}

/** The consent fields of a `handshake.auth` message. */
export interface SignedConsentToken {
  readonly consent_token_payload: string
  readonly consent_token_signature: string
}

// RFC 8410 PKCS#8 wrapping of a raw Ed25519 seed: this prefix, then the 32 bytes.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

/** The key pair whose private key is the 32-byte `seed` (deterministic: for tests and fixtures). */
export const patientKeyFromSeed = (seed: Uint8Array): PatientKeyPair => {
  if (seed.length !== 32) throw new TypeError("an Ed25519 seed is 32 bytes")
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" })
  const publicKeyB64u = createPublicKey(privateKey).export({ format: "jwk" }).x!
  return { privateKey, publicKey: new Uint8Array(Buffer.from(publicKeyB64u, "base64url")), publicKeyB64u }
}

/** A fresh key pair from 32 bytes of the system's CSPRNG. */
export const makePatientKey: Effect.Effect<PatientKeyPair> = Effect.sync(() => patientKeyFromSeed(randomBytes(32)))

/** Signs exactly `payload` (any bytes, for tests of malformed claims) as a consent token. */
export const signPayload = (key: PatientKeyPair, payload: Uint8Array | string): SignedConsentToken => {
  const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload)
  return {
    consent_token_payload: bytes.toString("base64url"),
    consent_token_signature: sign(null, bytes, key.privateKey).toString("base64url")
  }
}

/** Encodes `claims` as a consent token payload and signs it. */
export const signConsentToken = (key: PatientKeyPair, claims: ConsentClaims): SignedConsentToken =>
  signPayload(key, Buffer.from(encodePayload(claims), "base64url"))

/**
 * Signs the 32 raw bytes of a challenge nonce: the `signed_nonce` of `handshake.challenge_response`.
 * Dies on a nonce that is not 64 lowercase hex (decode the challenge message first).
 */
export const signNonce = (key: PatientKeyPair, nonceHex: string): string => {
  if (!NONCE_PATTERN.test(nonceHex)) throw new TypeError("a challenge nonce is 64 lowercase hex characters")
  return sign(null, Buffer.from(nonceHex, "hex"), key.privateKey).toString("base64url")
}

/**
 * Signs a revocation of `relationship_id` at `revoked_at` (PROTOCOL.md section 8): the `signature` of
 * `POST /v1/consent/revoke` and of `consent.revoke`.
 */
export const signRevocation = (key: PatientKeyPair, relationship_id: string, revoked_at: string): string =>
  sign(null, Buffer.from(revocationMessage(relationship_id, revoked_at), "utf8"), key.privateKey).toString("base64url")

/** What a patient consents to; `iat` and `exp` are filled in from the `Clock`. */
export interface ConsentRequest {
  readonly patient_agent_id: string
  readonly provider_npi: Npi
  readonly consented_actions: ReadonlyArray<string>
  readonly organization_npi?: Npi
  readonly nonce?: string
  /** How long the token is valid from now (one hour by default). */
  readonly validFor?: Duration.DurationInput
}

/** Claims issued now and valid for `validFor`, ready for `signConsentToken`. */
export const makeConsentClaims = (request: ConsentRequest): Effect.Effect<ConsentClaims> =>
  Effect.map(Clock.currentTimeMillis, (nowMillis) => {
    const { validFor, ...rest } = request
    const iat = Math.floor(nowMillis / 1000)
    return { ...rest, iat, exp: iat + Math.ceil(Duration.toSeconds(validFor ?? Duration.hours(1))) }
  })
