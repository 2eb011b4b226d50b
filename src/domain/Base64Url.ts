/**
 * base64url without padding (RFC 4648 §5), strict: `Buffer.from(s, "base64url")` silently accepts padding,
 * `+`, `/` and stray characters, so the alphabet and the exact length are checked before decoding.
 */
import * as Schema from "effect/Schema"

const ALPHABET = /^[A-Za-z0-9_-]*$/

/** The length of the unpadded base64url text for `bytes` bytes. */
export const encodedLength = (bytes: number): number => Math.ceil((bytes * 4) / 3)

/**
 * True when `s` is canonical unpadded base64url: only the URL-safe alphabet, a length that some byte
 * count produces, and zero bits in the unused low bits of the last character.
 */
export const isCanonicalBase64Url = (s: string): boolean => {
  if (!ALPHABET.test(s) || s.length % 4 === 1) return false
  // Re-encoding what Node decodes must give back the same text: this rejects non-zero trailing bits.
  return Buffer.from(s, "base64url").toString("base64url") === s
}

/** Encodes bytes as unpadded base64url. */
export const encode = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

/** Canonical base64url text (any length), decoded to bytes. */
export const Base64UrlBytes = Schema.transform(
  Schema.String.pipe(
    Schema.filter((s) => isCanonicalBase64Url(s) || "must be unpadded base64url (RFC 4648 §5)")
  ),
  Schema.Uint8ArrayFromSelf,
  {
    strict: true,
    decode: (s) => new Uint8Array(Buffer.from(s, "base64url")),
    encode: (bytes) => encode(bytes)
  }
).annotations({ identifier: "Base64UrlBytes" })

/**
 * base64url text that decodes to exactly `bytes` bytes: the length is checked as text first, so a
 * truncated or padded value fails with a clear message before anything is decoded.
 */
export const Base64UrlFixed = (bytes: number, what: string) => {
  const length = encodedLength(bytes)
  return Schema.transform(
    Schema.String.pipe(
      Schema.filter((s) =>
        (s.length === length && isCanonicalBase64Url(s)) ||
        `must be ${what}: ${bytes} bytes as unpadded base64url (${length} characters)`
      )
    ),
    Schema.Uint8ArrayFromSelf,
    {
      strict: true,
      decode: (s) => new Uint8Array(Buffer.from(s, "base64url")),
      encode: (b) => encode(b)
    }
  ).annotations({
    identifier: `Base64Url${bytes}`,
    // Generated values must encode: exactly `bytes` bytes, not any Uint8Array.
    arbitrary: () => (fc) => fc.uint8Array({ minLength: bytes, maxLength: bytes })
  })
}

/** An Ed25519 public key: 32 raw bytes as base64url (43 characters). */
export const Ed25519PublicKey = Base64UrlFixed(32, "an Ed25519 public key")

/** An Ed25519 signature: 64 raw bytes as base64url (86 characters). */
export const Ed25519Signature = Base64UrlFixed(64, "an Ed25519 signature")
