/**
 * The API-level middleware shared by the registry and the Neuron: every failure leaves as the project's error
 * body. A decode failure (schema, invalid JSON, a body over 1 MiB) is `400 INVALID_REQUEST` naming the field, an
 * unknown route is `404 NOT_FOUND`, and anything unexpected is `500 SERVER_ERROR` with no internals; its log line
 * names the error and its causes' messages, never a stack trace or a secret.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { describeCause } from "../log/Causes.js"
import { InvalidRequest, ServerError } from "../protocol/AxonApi.js"
import { describeIssues, errorResponse } from "./ErrorBody.js"
import * as RequestBody from "./RequestBody.js"
import { MAX_BODY_BYTES } from "./RequestBody.js"

export { MAX_BODY_BYTES }

const MAX_MESSAGE = 1000

const API_ERRORS = new Set([
  "InvalidRequest",
  "Unauthorized",
  "Forbidden",
  "NotRegistered",
  "NotFound",
  "AlreadyRegistered",
  "RateLimited",
  "StorageUnavailableError",
  "ServerError",
  "RelationshipAlreadyEnded",
  "ConsentRefused",
  "Unavailable"
])

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

const invalid = (message: string) =>
  Effect.fail(
    new InvalidRequest({
      // Type errors quote the value they got: keep a huge one from filling the answer.
      message: message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE) + "…" : message
    })
  )

const tooLarge = invalid(`body: must be at most ${MAX_BODY_BYTES} bytes (1 MiB)`)

/**
 * An optional field's decoder also tries `undefined` and reports "Expected undefined": noise next to the real
 * problem with the same field.
 */
const withoutOptionalNoise = (issues: ReadonlyArray<HttpApiDecodeError["issues"][number]>) =>
  issues.filter((issue) =>
    !issue.message.startsWith("Expected undefined") ||
    !issues.some((other) => other !== issue && other.path.join(".") === issue.path.join("."))
  )

const toApiFailure = (
  what: string,
  cause: Cause.Cause<unknown>
): Effect.Effect<HttpServerResponse.HttpServerResponse, InvalidRequest | ServerError> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof HttpApiDecodeError) return invalid(describeIssues(withoutOptionalNoise(error.issues)))
    const tag = tagOf(error)
    if (tag === "RouteNotFound") return Effect.succeed(errorResponse(404, "NOT_FOUND", "no such route"))
    if (tag !== undefined && API_ERRORS.has(tag)) return Effect.failCause(cause as Cause.Cause<never>)
  }
  // The platform turns an unreadable body into a defect (it reads the body with `orDie`).
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect) && tagOf(defect.value) === "RequestError") {
    const error = defect.value as HttpServerError.RequestError
    if (error.reason === "Decode") {
      if (error.cause instanceof RequestBody.JsonRefused) return invalid(`body: ${error.cause.message}`)
      return String(error.cause).includes("maxBytes") ? tooLarge : invalid("body: must be valid JSON")
    }
  }
  return Effect.zipRight(
    Effect.logError("unexpected failure while serving a request").pipe(
      Effect.annotateLogs("reason", describeCause(cause))
    ),
    Effect.fail(new ServerError({ message: `${what} could not complete this request` }))
  )
}

/**
 * The middleware as a Layer for `HttpApiBuilder.serve` of `api`. `what` names the server in a 500's message
 * ("the registry", "the Neuron").
 */
export const layer = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E | InvalidRequest | ServerError, R>,
  what: string
) => {
  const serveApp = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
    app.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(MAX_BODY_BYTES))),
      Effect.catchAllCause((cause) => toApiFailure(what, cause))
    )
  return HttpApiBuilder.middleware(api, (app) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      // Read ahead of the router (the registration's fast path, which hands over every request it does not
      // answer itself): the body is in the request, within the limit.
      if (RequestBody.isAlreadyRead(request)) return serveApp(app)
      const source = RequestBody.nodeSource(request)
      if (source === undefined) {
        // Not Node's server: refuse a declared over-size body; the platform cuts a chunked one off at the limit.
        const length = request.headers["content-length"]
        return length !== undefined && Number(length) > MAX_BODY_BYTES ? tooLarge : serveApp(app)
      }
      const declared = RequestBody.declaredLength(source)
      if (source.headers["transfer-encoding"] === undefined && (declared === undefined || declared === 0)) {
        return serveApp(app)
      }
      const contentType = source.headers["content-type"]
      if (contentType !== undefined && !contentType.toLowerCase().includes("json")) {
        return invalid("body: must be JSON (Content-Type: application/json)")
      }
      // Read here, within the limit, and hand the platform the text: a chunked body over 1 MiB gets its 400.
      return Effect.flatMap(RequestBody.read(source), (body) =>
        body._tag === "TooLarge"
          ? tooLarge
          : serveApp(
            Effect.provideService(app, HttpServerRequest.HttpServerRequest, RequestBody.withBody(request, body.text))
          ))
    }))
}
