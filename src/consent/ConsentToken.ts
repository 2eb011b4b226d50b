/**
 * The consent token (PROTOCOL.md section 2): base64url of the UTF-8 JSON claims, signed by the patient's
 * Ed25519 key over exactly those bytes. Claims this version does not know are accepted and dropped, so a
 * newer CareAgent can add claims without being refused (forward compatibility); the signature still covers them.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { encodedLength } from "../domain/Base64Url.js"
import * as Json from "../domain/Json.js"
import { Npi } from "../domain/Npi.js"
import { ConsentError } from "./ConsentError.js"

/** The largest accepted decoded payload: bounds the work spent on a token before it is authenticated. */
export const MAX_PAYLOAD_BYTES = 8192

/** The largest accepted `consent_token_payload` text. */
export const MAX_PAYLOAD_TEXT = encodedLength(MAX_PAYLOAD_BYTES)

/** What each claim must be, in the words sent back when it is not: never the offending value. */
const REQUIREMENTS = {
  patient_agent_id: "must be 1 to 256 printable ASCII characters",
  provider_npi: "must be a string",
  consented_actions: "must be a list of 1 to 32 actions, each a string of 1 to 128 characters",
  iat: "must be a non-negative integer number of seconds since the epoch",
  exp: "must be a non-negative integer number of seconds since the epoch",
  nonce: "must be a string of 1 to 256 characters",
  organization_npi: "must be a string"
} as const

const PatientAgentId = Schema.String.pipe(Schema.pattern(/^[\x20-\x7e]{1,256}$/))
const Action = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128))
const EpochSeconds = Schema.Int.pipe(Schema.nonNegative())

const fields = {
  patient_agent_id: PatientAgentId,
  consented_actions: Schema.Array(Action).pipe(Schema.minItems(1), Schema.maxItems(32)),
  iat: EpochSeconds,
  exp: EpochSeconds,
  nonce: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)))
}

/** The claims of a consent token, as the patient's agent signs them and the verifier returns them. */
export const ConsentClaims = Schema.Struct({
  ...fields,
  provider_npi: Npi,
  organization_npi: Schema.optional(Npi)
}).annotations({ identifier: "ConsentClaims" })

/** @see ConsentClaims */
export type ConsentClaims = typeof ConsentClaims.Type

/**
 * The claims as decoded before the rules are applied: both NPIs are plain strings here, so that a bad
 * provider NPI or a foreign organization is refused with its own reason rather than as "malformed".
 */
export const UncheckedClaims = Schema.Struct({
  ...fields,
  provider_npi: Schema.String,
  organization_npi: Schema.optional(Schema.String)
})

/** @see UncheckedClaims */
export type UncheckedClaims = typeof UncheckedClaims.Type

/** Encodes claims as a `consent_token_payload` (base64url of the UTF-8 JSON). */
export const encodePayload = (claims: ConsentClaims): string =>
  Buffer.from(JSON.stringify(Schema.encodeSync(ConsentClaims)(claims)), "utf8").toString("base64url")

const utf8 = new TextDecoder("utf-8", { fatal: true })
const decodeUnchecked = Schema.decodeUnknownEither(UncheckedClaims)

const malformed = (message: string) =>
  Either.left(new ConsentError({ reason: "malformed", message: `consent_token_payload: ${message}` }))

/** One `path: requirement` line per problem; the requirement comes from `REQUIREMENTS`, not from the input. */
const describe = (error: ParseResult.ParseError): Array<string> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => {
    const path = issue.path.map(String).join(".")
    const claim = issue.path[0]
    const requirement = typeof claim === "string" && Object.hasOwn(REQUIREMENTS, claim)
      ? REQUIREMENTS[claim as keyof typeof REQUIREMENTS]
      : "is invalid"
    return issue._tag === "Missing" ? `${path}: is required` : `${path}: ${requirement}`
  })

/**
 * Decodes the (already authenticated) payload bytes into claims. A failure names each bad claim by its
 * path and what it must be, never its value.
 */
export const decodeClaims = (payload: Uint8Array): Either.Either<UncheckedClaims, ConsentError> => {
  let text: string
  try {
    text = utf8.decode(payload)
  } catch {
    return malformed("must be base64url of UTF-8 JSON claims")
  }
  const parsed = Json.parseUntrusted(text)
  if (Either.isLeft(parsed)) {
    return malformed(
      parsed.left === "too_deep"
        ? `the claims ${Json.describeRefusal(parsed.left)}`
        : "must be base64url of UTF-8 JSON claims"
    )
  }
  const json = parsed.right
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return malformed("the claims must be a JSON object")
  }
  const decoded = decodeUnchecked(json, { errors: "all" })
  if (Either.isRight(decoded)) return Either.right(decoded.right)
  return malformed(`bad claims: ${Array.from(new Set(describe(decoded.left))).join("; ")}`)
}
