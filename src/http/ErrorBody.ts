/**
 * The project's JSON error-body convention for every HTTP response that is not a success:
 * `{"error":{"code":"SOME_CODE","message":"human text"}}`, with a fitting status. No stack traces,
 * no SQL, no secrets: messages are written for the caller, never copied from a cause.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** The wire shape of an error body. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String,
    message: Schema.String
  })
}).annotations({ identifier: "ErrorBody" })

/** @see ErrorBody */
export type ErrorBody = typeof ErrorBody.Type

/**
 * Gives an error class (a `Schema.TaggedError` with a `message`) the wire shape of `ErrorBody` with a fixed
 * `code` and HTTP `status`, for use with `HttpApiEndpoint.addError` / `HttpApiGroup.addError`.
 */
export const wire = <A extends { readonly message: string }, const Tag extends string, R>(
  schema: Schema.Schema<A, { readonly _tag: Tag; readonly message: string }, R>,
  options: { readonly tag: Tag; readonly code: string; readonly status: number; readonly description?: string }
): Schema.Schema<A, ErrorBody, R> =>
  Schema.transform(ErrorBody, schema, {
    strict: true,
    decode: (body) => ({ _tag: options.tag, message: body.error.message }),
    encode: (e) => ({ error: { code: options.code, message: e.message } })
  }).annotations({
    ...HttpApiSchema.annotations({ status: options.status }),
    identifier: options.code,
    ...(options.description === undefined ? {} : { description: options.description })
  })

/** An error response in the project's convention, for routes served outside an `HttpApi`. */
export const errorResponse = (
  status: number,
  code: string,
  message: string,
  options?: { readonly headers?: Record<string, string> }
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson({ error: { code, message } } satisfies ErrorBody, {
    status,
    ...(options?.headers === undefined ? {} : { headers: options.headers })
  })

/**
 * Formats a decode failure as one line per problem, each naming the field by its path
 * (`organization_npi: must be a valid NPI ...`), for a `400 INVALID_REQUEST` message.
 */
export const describeParseError = (error: ParseResult.ParseError): string =>
  describeIssues(ParseResult.ArrayFormatter.formatErrorSync(error))

// A refusal names the field and says what was wrong; it must not echo a hostile value (or key) back at length.
const MAX_FIELD = 120
const MAX_MESSAGE = 240
const clip = (text: string, max: number) => text.length <= max ? text : `${text.slice(0, max - 1)}…`

/** `describeParseError` for issues already formatted by `ArrayFormatter` (as in `HttpApiDecodeError.issues`). */
export const describeIssues = (issues: ReadonlyArray<ParseResult.ArrayFormatterIssue>): string => {
  const lines = issues.map((issue) => {
    const field = issue.path.length === 0 ? "body" : issue.path.map(String).join(".")
    const message = issue._tag === "Missing"
      ? "is required"
      : issue._tag === "Unexpected"
      ? "is not allowed"
      : issue.message
    return `${clip(field, MAX_FIELD)}: ${clip(message, MAX_MESSAGE)}`
  })
  return Array.from(new Set(lines)).join("; ")
}
