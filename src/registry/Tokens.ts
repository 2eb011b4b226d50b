/**
 * Bearer and enrollment tokens. A bearer token is 32 random bytes as base64url (43 characters); the registry
 * keeps only its SHA-256 and compares hashes with `timingSafeEqual`, so neither the stored value nor the time a
 * comparison takes says anything about a valid token.
 */
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"

/** Length of a bearer token's text: 32 bytes in unpadded base64url. */
export const BEARER_TOKEN_LENGTH = 43

const BEARER_TOKEN = /^[A-Za-z0-9_-]{43}$/

/** A new bearer token: 32 random bytes, base64url. */
export const generate = (): Redacted.Redacted<string> => Redacted.make(Crypto.randomBytes(32).toString("base64url"))

// `crypto.hash` (Node >= 20.12) is the one-shot form, about twice as fast as `createHash` for a short input.
const oneShot = (Crypto as { hash?: (algorithm: string, data: string, encoding: "buffer") => Buffer }).hash

/** The SHA-256 of a token's text (the only form the registry stores). */
export const hash = (token: string): Buffer =>
  oneShot !== undefined
    ? oneShot("sha256", token, "buffer")
    : Crypto.createHash("sha256").update(token, "utf8").digest()

/** Constant-time equality of two hashes (both 32 bytes). */
export const hashesEqual = (a: Buffer, b: Buffer): boolean => a.length === b.length && Crypto.timingSafeEqual(a, b)

/**
 * The token of an `Authorization: Bearer <token>` header, or `undefined` when the header is missing or is not a
 * bearer token of the bearer-token shape (so an empty, over-long or wrong-alphabet token never reaches a lookup).
 */
export const parseBearer = (header: string | undefined): string | undefined => {
  if (header === undefined || header.length !== 7 + BEARER_TOKEN_LENGTH) return undefined
  if (header.slice(0, 7).toLowerCase() !== "bearer ") return undefined
  const token = header.slice(7)
  return BEARER_TOKEN.test(token) ? token : undefined
}

/**
 * True when `header` carries exactly the enrollment token (`Authorization: Bearer <enrollment token>`).
 * The comparison runs on hashes, in constant time, whatever the presented length.
 */
export const matchesEnrollment = (header: string | undefined, enrollmentHash: Buffer): boolean => {
  if (header === undefined || header.slice(0, 7).toLowerCase() !== "bearer ") return false
  const presented = header.slice(7)
  return presented.length > 0 && hashesEqual(hash(presented), enrollmentHash)
}
