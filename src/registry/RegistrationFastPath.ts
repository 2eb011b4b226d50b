/**
 * The registration (`POST /v1/neurons`) served ahead of the `HttpApi` router when it succeeds. Measured (issue 14,
 * BENCHMARKS.md): through the generic pipeline (routing, the platform's streamed body read, effectful decoding, the
 * union-encoded answer) a registration cost several times what the bare insert costs, and after a registry loses
 * its data the whole network registers again at once. Here the body is read once, parsed and checked with
 * `AxonApi`'s own `RegisterNeuronRequest` synchronously, and the answer written as the route would encode it.
 *
 * On a Node server (every entry point's) registrations are taken where the server emits `request` (`take`), as
 * the handshake takes its upgrades: the platform's per-request work (a fiber with the request's context, a scope,
 * the tracing middleware's URL parse and header copies, the response conversion and a wait for the write's
 * callback) measured about 150 µs a request, as much as the registration's own store work, against 30 µs for the
 * same constant answer written at the `request` event. Elsewhere `middleware` does the same inside the platform.
 *
 * Every request this path does not answer itself, it hands to the router unchanged, with the body it read: no
 * body, a non-JSON `Content-Type`, invalid JSON, a field that does not decode. The router then answers exactly as
 * it always did (the same `400` naming the field), so only the well-formed request is served here, and an error
 * of the store becomes the same error body the route would send. The store's log line for each registration is
 * written either way.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import type { Server } from "node:http"
import * as Json from "../domain/Json.js"
import { nodeServerOf } from "../http/NodeServer.js"
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

/** An answer's status and JSON text. */
interface Answer {
  readonly status: number
  readonly body: string
}

/** The text of `errorResponse`'s body (ErrorBody.ts). */
const errorText = (code: string, message: string) => JSON.stringify({ error: { code, message } })

const TOO_LARGE: Answer = {
  status: 400,
  body: errorText("INVALID_REQUEST", `body: must be at most ${MAX_BODY_BYTES} bytes (1 MiB)`)
}

const STOPPING: Answer = { status: 503, body: errorText("UNAVAILABLE", "the registry is stopping; try again shortly") }

// What the router answers for a failure it did not expect (ApiErrors.ts), with the cause going to the log.
const serverError = (cause: Cause.Cause<unknown>) =>
  Effect.as(
    Effect.logError("unexpected failure while serving a request").pipe(
      Effect.annotateLogs("reason", describeCause(cause))
    ),
    { status: 500, body: errorText("SERVER_ERROR", "the registry could not complete this request") }
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
): Effect.Effect<Answer> =>
  register(request, authorization).pipe(
    Effect.map(({ created, entry, token }): Answer => ({
      status: created ? 201 : 200,
      // The fields in `NeuronRegistered`'s order: the same text the schema's encoding gives.
      body: JSON.stringify({
        registration_id: entry.registrationId,
        bearer_token: Redacted.value(token),
        status: "reachable",
        heartbeat_interval_s: entry.intervalS,
        ttl_s: entry.intervalS * 3
      })
    })),
    Effect.catchAll((error) => {
      const [status, code] = STATUS[error._tag]!
      return Effect.succeed({ status, body: errorText(code, error.message) })
    }),
    Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : serverError(cause))
  )

const toResponse = ({ body, status }: Answer) =>
  HttpServerResponse.raw(body, { status, contentType: "application/json", contentLength: Buffer.byteLength(body) })

/** Headers and body in one write, with their length (no chunked encoding), as the platform writes them. */
const writeNode = (response: Http.ServerResponse, { body, status }: Answer) => {
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  response.end(body)
}

/** Whether a request is a registration this path may answer: the router refuses the others with its own words. */
const isCandidate = (method: string | undefined, url: string | undefined, source: Http.IncomingMessage) => {
  if (method !== "POST" || url === undefined || !ROUTE.test(url)) return false
  const contentType = source.headers["content-type"]
  const declared = RequestBody.declaredLength(source)
  const hasBody = source.headers["transfer-encoding"] !== undefined || (declared !== undefined && declared > 0)
  return hasBody && (contentType === undefined || contentType.toLowerCase().includes("json"))
}

// The body of a request taken at the Node server and handed on to the platform: its stream is spent.
const readAhead = Symbol.for("neuron/registry/RegistrationFastPath/readAhead")

type Taken = Http.IncomingMessage & { [readAhead]?: string }

/**
 * Takes the registrations of the Node server behind `server` at its `request` event until the scope closes (a
 * server that is not a Node server of this process keeps them in `middleware`). Acquire it after the platform
 * serves: it is then released first, and a registration arriving while the registry stops meets the platform's
 * own stopping answer.
 */
export const take = (
  server: HttpServer.HttpServer,
  register: RegistryStoreShape["register"]
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const node = nodeServerOf(server)
    if (Option.isNone(node)) return
    const target = node.value
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())

    const serve = (request: Taken, response: Http.ServerResponse, handOn: () => void) =>
      Effect.flatMap(RequestBody.read(request), (body): Effect.Effect<void> => {
        if (body._tag === "TooLarge") return Effect.sync(() => writeNode(response, TOO_LARGE))
        const payload = decoded(body.text)
        if (payload === undefined) {
          request[readAhead] = body.text
          return Effect.sync(handOn)
        }
        return Effect.map(answer(register, payload, request.headers.authorization), (a) => writeNode(response, a))
      }).pipe(
        // Only when the registry stops under it (the group commit's writer was interrupted): answered, not left open.
        Effect.catchAllCause(() => Effect.sync(() => response.headersSent || writeNode(response, STOPPING)))
      )

    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const emit = target.emit
        let active = true
        const intercepted = function(this: Server, event: string | symbol, ...args: Array<any>): boolean {
          if (active && event === "request") {
            const [request, response] = args as [Taken, Http.ServerResponse]
            if (isCandidate(request.method, request.url, request)) {
              // Node emits `request` when the headers are parsed; the parser pushes a small body right after, in the
              // same call. Started on the next tick, the fiber finds the body whole and reads it without a yield.
              process.nextTick(() => runFork(serve(request, response, () => emit.apply(this, [event, ...args] as any))))
              return true
            }
          }
          return emit.apply(this, [event, ...args] as any)
        }
        target.emit = intercepted as typeof target.emit
        // Restored unless someone wrapped `emit` after us (the handshake does, for upgrades): then ours steps aside.
        return () => {
          if (target.emit === intercepted) target.emit = emit
          else active = false
        }
      }),
      (restore) => Effect.sync(restore)
    )
  })

/**
 * The middleware for `HttpServer.serve`: well-formed registrations are answered here, every other request goes on
 * to `app` (with its body, when it was read here or by `take`).
 */
export const middleware =
  (register: RegistryStoreShape["register"]) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): HttpApp.Default<E, R> => {
      if (request.method !== "POST" || !ROUTE.test(request.url)) return app
      const source: Taken | undefined = RequestBody.nodeSource(request)
      if (source === undefined) return app
      const ahead = source[readAhead]
      if (ahead !== undefined) {
        return Effect.provideService(app, HttpServerRequest.HttpServerRequest, RequestBody.withBody(request, ahead))
      }
      // Left to the router, unread: it refuses these with the messages it always gave.
      if (!isCandidate(request.method, request.url, source)) return app
      return Effect.flatMap(RequestBody.read(source), (body): HttpApp.Default<E, R> => {
        if (body._tag === "TooLarge") return Effect.succeed(toResponse(TOO_LARGE))
        const payload = decoded(body.text)
        return payload !== undefined
          ? Effect.map(answer(register, payload, source.headers.authorization), toResponse)
          : Effect.provideService(app, HttpServerRequest.HttpServerRequest, RequestBody.withBody(request, body.text))
      })
    })
