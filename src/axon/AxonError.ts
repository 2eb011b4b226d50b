/**
 * `AxonError`: every way a call to an Axon registry can fail, as the Neuron needs to tell them apart
 * (PROTOCOL.md section 1, "How the Neuron reads the registry's answers"), and the one place where an
 * HTTP status and error body become a `reason`.
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** Why a registry call failed. */
export const AxonErrorReason = Schema.Literal(
  /** Connection refused, DNS failure, reset: no answer at all. */
  "unreachable",
  /** No complete answer within `NEURON_AXON_TIMEOUT_MS`. */
  "timeout",
  /** 401: missing, wrong or unknown token (bearer token, or the enrollment token on registration). */
  "unauthorized",
  /** 404 on a neuron-scoped write: the registry does not know (or no longer knows) this registration. */
  "not_registered",
  /** 409, or a 400 saying the NPI is already registered, on registration: retrying cannot fix it. */
  "conflict",
  /** Any other 4xx (with the registry's message), or a request refused locally before sending (no status). */
  "rejected",
  /** 5xx. */
  "server_error",
  /** A success status whose body does not match the schema. */
  "undecodable",
  /** 404 on a route the registry does not have (the public CareAgent Axon has no provider listing). */
  "not_supported"
)
/** @see AxonErrorReason */
export type AxonErrorReason = typeof AxonErrorReason.Type

/** The registry call that failed. */
export const AxonOperation = Schema.Literal(
  "register",
  "heartbeat",
  "provider_add",
  "provider_remove",
  "provider_list",
  "deregister"
)
/** @see AxonOperation */
export type AxonOperation = typeof AxonOperation.Type

/**
 * A failed registry call. `url` is the registry's base URL (never with a token, never with credentials),
 * `status` the HTTP status when the registry answered. The message never carries a secret.
 */
export class AxonError extends Schema.TaggedError<AxonError>()("AxonError", {
  reason: AxonErrorReason,
  operation: AxonOperation,
  message: Schema.String,
  status: Schema.optional(Schema.Int),
  url: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {}

/** True for any `AxonError`. */
export const isAxonError = (u: unknown): u is AxonError => Predicate.isTagged(u, "AxonError")

/**
 * The registry no longer accepts this registration: `401` or `404` on a heartbeat or a provider add or
 * remove. The Neuron registers again. (A `404` on a listing is `not_supported`, never this.)
 */
export const isRegistrationLost = (e: AxonError): boolean =>
  (e.reason === "unauthorized" || e.reason === "not_registered") &&
  (e.operation === "heartbeat" || e.operation === "provider_add" || e.operation === "provider_remove")

/** The registry did not answer properly; another attempt (later, or at the next registry URL) may work. */
export const isRetryable = (e: AxonError): boolean =>
  e.reason === "unreachable" || e.reason === "timeout" || e.reason === "server_error"

/** A registration conflict that needs the operator (an enrollment token, or a cleared registration). */
export const isConflict = (e: AxonError): boolean => e.reason === "conflict"

// ---------------------------------------------------------------------------------------------------------------
// Reading an error answer
// ---------------------------------------------------------------------------------------------------------------

/** An error answer, read from either body shape: `{"error":{"code","message"}}` or `{"error":"text"}`. */
export interface ErrorAnswer {
  readonly status: number
  readonly code: string | undefined
  readonly message: string | undefined
}

const MAX_MESSAGE = 300

/** Printable, bounded text: a registry's message goes into logs and the health file. */
const clean = (s: string): string => {
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, " ").trim()
  return flat.length > MAX_MESSAGE ? flat.slice(0, MAX_MESSAGE) + "…" : flat
}

/** Reads the code and message of an error body in either shape; anything else gives neither. */
export const readErrorBody = (status: number, text: string): ErrorAnswer => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { status, code: undefined, message: undefined }
  }
  const error = Predicate.hasProperty(json, "error") ? json.error : undefined
  if (typeof error === "string") return { status, code: undefined, message: clean(error) }
  if (Predicate.isRecord(error)) {
    return {
      status,
      code: typeof error.code === "string" ? clean(error.code) : undefined,
      message: typeof error.message === "string" ? clean(error.message) : undefined
    }
  }
  return { status, code: undefined, message: undefined }
}

/** `409`, code `ALREADY_REGISTERED`, or a `400` whose text says so (the public CareAgent Axon). */
export const saysAlreadyRegistered = (answer: ErrorAnswer): boolean =>
  answer.status === 409 ||
  ((answer.status === 400 || answer.status === 409) &&
    (answer.code === "ALREADY_REGISTERED" || /already registered/i.test(answer.message ?? "")))

/**
 * What a non-success answer means for `operation`, or `"already_registered"` for a provider add that the
 * registry already had (a success for the caller).
 */
export const classify = (operation: AxonOperation, answer: ErrorAnswer): AxonErrorReason | "already_registered" => {
  const { status } = answer
  if (status >= 500) return "server_error"
  if (saysAlreadyRegistered(answer)) {
    if (operation === "provider_add") return "already_registered"
    if (operation === "register") return "conflict"
  }
  if (status === 401) return "unauthorized"
  if (status === 404) {
    switch (operation) {
      case "heartbeat":
      case "provider_add":
      case "provider_remove":
        return "not_registered"
      case "provider_list":
        return "not_supported"
      case "deregister":
        // Our registry says NOT_REGISTERED; the public Axon has no such route and answers a bare "Not found".
        return answer.code === "NOT_REGISTERED" ? "not_registered" : "not_supported"
      case "register":
        return "rejected"
    }
  }
  return "rejected"
}

/** The message of an error made from an answer: the registry's own words when it gave some. */
export const describeAnswer = (operation: AxonOperation, answer: ErrorAnswer, url?: string): string => {
  const said = answer.message === undefined || answer.message === ""
    ? ""
    : `: ${answer.code === undefined ? "" : `${answer.code}: `}${answer.message}`
  return `Axon registry${url === undefined ? "" : ` at ${url}`} answered ${answer.status} to ${operation}${said}`
}
