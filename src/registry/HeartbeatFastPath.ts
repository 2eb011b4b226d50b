/**
 * The heartbeat (`PUT /v1/neurons/{registration_id}/endpoint`) served ahead of the `HttpApi` router. It is
 * nearly all of a registry's traffic, and the generic pipeline (routing, effectful decoding of path and payload,
 * a union-encoded success) costs several times the work itself. Same schemas, answers and errors as the
 * `AxonApi` route, which stays defined for the client and the OpenAPI document: the path and the body are checked
 * with `AxonApi`'s own schemas, synchronously. On SQLite (`answerInMemory`) the token check and the beat are
 * synchronous in-memory calls; no span, no SQL; only a heartbeat that changes something (new endpoint, back from
 * `down`) takes the slow path. On PostgreSQL (`answerWithStatement`) the beat is one statement.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type * as Http from "node:http"
import * as Json from "../domain/Json.js"
import { describeParseError, errorResponse } from "../http/ErrorBody.js"
import * as RequestBody from "../http/RequestBody.js"
import { MAX_BODY_BYTES } from "../http/RequestBody.js"
import { EndpointUrl, HeartbeatRequest, RegistrationId } from "../protocol/AxonApi.js"
import type { Forbidden, NotRegistered, Unauthorized, Unavailable } from "../protocol/AxonApi.js"
import type { HeartbeatAnswer } from "./RegistryStore.js"
import type { InMemoryBeats } from "./SqliteRegistryStore.js"

const ROUTE = /^\/v1\/neurons\/([^/?#]*)\/endpoint(?:\?.*)?$/
const decodeBody = Schema.decodeUnknownEither(HeartbeatRequest)
const isEndpointUrl = Schema.is(EndpointUrl)
const isRegistrationId = Schema.is(RegistrationId)

const STATUS: Record<string, readonly [number, string]> = {
  Unauthorized: [401, "UNAUTHORIZED"],
  Forbidden: [403, "FORBIDDEN"],
  NotRegistered: [404, "NOT_REGISTERED"],
  Unavailable: [503, "UNAVAILABLE"]
}

const invalid = (message: string) => Effect.succeed(errorResponse(400, "INVALID_REQUEST", message))
const badId = invalid("registration_id: must be a registration id: 1 to 128 of A-Z a-z 0-9 _ -")
const tooLarge = invalid(`body: must be at most ${MAX_BODY_BYTES} bytes (1 MiB)`)

const ok = (nowMs: number) => {
  const body = `{"status":"reachable","last_heartbeat_at":"${new Date(nowMs).toISOString()}"}`
  // A string with its length: Node sends headers and body in one write, without chunked encoding.
  return HttpServerResponse.raw(body, { contentType: "application/json", contentLength: body.length })
}

const refused = (error: { readonly _tag: string; readonly message: string }) => {
  const [status, code] = STATUS[error._tag]!
  return errorResponse(status, code, error.message)
}

/** The endpoint a heartbeat body names, or the `400` it earns. */
const endpointOf = (text: string): string | HttpServerResponse.HttpServerResponse => {
  // Untrusted JSON: its nesting is bounded before it is parsed (src/domain/Json.ts).
  const parsed = text === "" ? Either.right(null) : Json.parseUntrusted(text)
  if (Either.isLeft(parsed)) return errorResponse(400, "INVALID_REQUEST", `body: ${Json.describeRefusal(parsed.left)}`)
  const json = parsed.right
  // `HeartbeatRequest` is `{ neuron_endpoint_url: EndpointUrl }`: checking that field is decoding it. The full
  // decode runs only to word the 400.
  const field = typeof json === "object" && json !== null
    ? (json as Record<string, unknown>).neuron_endpoint_url
    : undefined
  if (typeof field === "string" && isEndpointUrl(field)) return field
  const body = decodeBody(json)
  return Either.isLeft(body)
    ? errorResponse(400, "INVALID_REQUEST", describeParseError(body.left))
    : body.right.neuron_endpoint_url
}

/**
 * The SQLite store's heartbeat, after the body is read: synchronous unless the heartbeat changes something.
 */
export const answerInMemory = (store: InMemoryBeats): HeartbeatAnswer => (clock, id, authorization, text) => {
  const entry = store.check(id, authorization)
  let url: string
  if (!("_tag" in entry) && entry.lastBeatText === text) {
    // The very body this neuron sent last time, already checked, naming its current endpoint: skip decoding.
    url = entry.endpointUrl
  } else {
    // The body is judged before the token, as on every other route (a 400 comes before a 401).
    const endpoint = endpointOf(text)
    if (typeof endpoint !== "string") return Effect.succeed(endpoint)
    url = endpoint
    if ("_tag" in entry) return Effect.succeed(refused(entry))
    entry.lastBeatText = undefined
  }
  const nowMs = clock.unsafeCurrentTimeMillis()
  if (store.beatInMemory(entry, url, nowMs)) {
    entry.lastBeatText = text
    return Effect.succeed(ok(nowMs))
  }
  return store.heartbeat(entry, url).pipe(
    Effect.map(ok),
    Effect.catchAll((error) => Effect.succeed(refused(error)))
  )
}

/**
 * The PostgreSQL store's heartbeat: the body is judged first (a 400 comes before a 401), then `beat` records it
 * in one statement, which also checks the token.
 */
export const answerWithStatement = (
  beat: (
    id: string,
    authorization: string | undefined,
    endpointUrl: string
  ) => Effect.Effect<number, Unauthorized | Forbidden | NotRegistered | Unavailable>
): HeartbeatAnswer =>
(_clock, id, authorization, text) => {
  const endpoint = endpointOf(text)
  if (typeof endpoint !== "string") return Effect.succeed(endpoint)
  return beat(id, authorization, endpoint).pipe(
    Effect.map(ok),
    Effect.catchAll((error) => Effect.succeed(refused(error)))
  )
}

/** Reads the body straight from Node's request, at most 1 MiB, then answers. */
const serveNode = (
  answer: HeartbeatAnswer,
  clock: Clock.Clock,
  id: string,
  source: Http.IncomingMessage
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const authorization = source.headers.authorization
  return Effect.flatMap(
    RequestBody.read(source),
    (body) => body._tag === "TooLarge" ? tooLarge : answer(clock, id, authorization, body.text)
  )
}

/**
 * The middleware for `HttpServer.serve`: heartbeats are answered here, every other request goes on to `app`.
 */
export const middleware = (answer: HeartbeatAnswer) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): HttpApp.Default<E, R> => {
    if (request.method !== "PUT") return app
    const match = ROUTE.exec(request.url)
    if (match === null) return app
    let id: string
    try {
      id = decodeURIComponent(match[1]!)
    } catch {
      return badId
    }
    if (!isRegistrationId(id)) return badId
    const source = RequestBody.nodeSource(request)
    return Effect.clockWith((clock) =>
      source !== undefined
        ? serveNode(answer, clock, id, source)
        : Effect.flatMap(
          Effect.orElseSucceed(request.text, () => undefined),
          (text) =>
            text === undefined || Buffer.byteLength(text) > MAX_BODY_BYTES
              ? tooLarge
              : answer(clock, id, request.headers.authorization, text)
        )
    )
  })
