/**
 * The registration (`POST /v1/neurons`) served ahead of the `HttpApi` router when it succeeds. Measured (issue 14,
 * BENCHMARKS.md): through the generic pipeline (routing, the platform's streamed body read, effectful decoding, the
 * union-encoded answer) a registration cost several times what the bare insert costs, and after a registry loses
 * its data the whole network registers again at once. Here the body is read once, parsed and checked with
 * `AxonApi`'s own `RegisterNeuronRequest` synchronously, and the answer written as the route would encode it.
 *
 * Every request this path does not answer itself, it hands to the router unchanged, with the body it read
 * (`RequestBody.withBody`): no body, a non-JSON `Content-Type`, invalid JSON, a field that does not decode. The
 * router then answers exactly as it always did (the same `400` naming the field), so only the well-formed request
 * is served here, and an error of the store becomes the same error body the route would send.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Json from "../domain/Json.js"
import { errorResponse } from "../http/ErrorBody.js"
import * as RequestBody from "../http/RequestBody.js"
import { MAX_BODY_BYTES } from "../http/RequestBody.js"
import { describeCause } from "../log/Causes.js"
import { RegisterNeuronRequest } from "../protocol/AxonApi.js"
import type { RegistryStoreShape } from "./RegistryStore.js"

const ROUTE = /^\/v1\/neurons(?:\?.*)?$/
const decode = Schema.decodeUnknownEither(RegisterNeuronRequest)

const STATUS: Record<string, readonly [number, string]> = {
  Unauthorized: [401, "UNAUTHORIZED"],
  AlreadyRegistered: [409, "ALREADY_REGISTERED"],
  Unavailable: [503, "UNAVAILABLE"]
}

const tooLarge = Effect.succeed(
  errorResponse(400, "INVALID_REQUEST", `body: must be at most ${MAX_BODY_BYTES} bytes (1 MiB)`)
)

// What the router answers for a failure it did not expect (ApiErrors.ts), with the cause going to the log.
const serverError = (cause: Cause.Cause<unknown>) =>
  Effect.as(
    Effect.logError("unexpected failure while serving a request").pipe(
      Effect.annotateLogs("reason", describeCause(cause))
    ),
    errorResponse(500, "SERVER_ERROR", "the registry could not complete this request")
  )

/** The body, decoded as the route would, or `undefined` when the route must judge it (and word the `400`). */
const decoded = (text: string): RegisterNeuronRequest | undefined => {
  const json = Json.parseUntrusted(text)
  if (Either.isLeft(json)) return undefined
  const request = decode(json.right)
  return Either.isRight(request) ? request.right : undefined
}

/** Registers, and answers as `AxonApi`'s `register` endpoint encodes its `201` (or, for a rotation, `200`). */
const answer = (
  register: RegistryStoreShape["register"],
  request: RegisterNeuronRequest,
  authorization: string | undefined
) =>
  register(request, authorization).pipe(
    Effect.map(({ created, entry, token }) => {
      // The fields in `NeuronRegistered`'s order: the same text the schema's encoding gives.
      const body = JSON.stringify({
        registration_id: entry.registrationId,
        bearer_token: Redacted.value(token),
        status: "reachable",
        heartbeat_interval_s: entry.intervalS,
        ttl_s: entry.intervalS * 3
      })
      return HttpServerResponse.raw(body, {
        status: created ? 201 : 200,
        contentType: "application/json",
        contentLength: Buffer.byteLength(body)
      })
    }),
    Effect.catchAll((error) => {
      const [status, code] = STATUS[error._tag]!
      return Effect.succeed(errorResponse(status, code, error.message))
    }),
    Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : serverError(cause))
  )

/**
 * The middleware for `HttpServer.serve`: well-formed registrations are answered here, every other request goes on
 * to `app` (with its body, when it was read here).
 */
export const middleware =
  (register: RegistryStoreShape["register"]) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): HttpApp.Default<E, R> => {
      if (request.method !== "POST" || !ROUTE.test(request.url)) return app
      const source = RequestBody.nodeSource(request)
      if (source === undefined) return app
      const contentType = source.headers["content-type"]
      const declared = RequestBody.declaredLength(source)
      const hasBody = source.headers["transfer-encoding"] !== undefined || (declared !== undefined && declared > 0)
      // Left to the router, unread: it refuses these with the messages it always gave.
      if (!hasBody || (contentType !== undefined && !contentType.toLowerCase().includes("json"))) return app
      return Effect.flatMap(RequestBody.read(source), (body): HttpApp.Default<E, R> => {
        if (body._tag === "TooLarge") return tooLarge
        const payload = decoded(body.text)
        return payload !== undefined
          ? answer(register, payload, source.headers.authorization)
          : Effect.provideService(app, HttpServerRequest.HttpServerRequest, RequestBody.withBody(request, body.text))
      })
    })
