/**
 * HandshakeServer: `GET /ws/handshake` (PROTOCOL.md section 2) on the Neuron's HTTP server. It checks the
 * Origin, queues the upgrade behind the concurrency ceiling (FIFO, 503 + Retry-After past the queue time-out),
 * upgrades with its own `ws` server (frame limit, see WebSocketConnection.ts), runs the HandshakeProtocol state
 * machine and closes with the code of its outcome. Every socket lives in the request's scope: interrupting the
 * server closes open handshakes with 1001 and answers queued upgrades 503, then returns.
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { ConsentVerifier } from "../consent/ConsentVerifier.js"
import { errorResponse } from "../http/ErrorBody.js"
import { AuditLog } from "../store/AuditLog.js"
import * as Admission from "./Admission.js"
import { encodeServerMessage } from "./HandshakeMessages.js"
import * as HandshakeOutcome from "./HandshakeOutcome.js"
import * as HandshakeProtocol from "./HandshakeProtocol.js"
import {
  type HandshakeServerOptions,
  normalizeOrigin,
  optionsConfig,
  resolveOptions
} from "./HandshakeServerOptions.js"
import type { ProviderLookup } from "./ProviderLookup.js"
import type { RelationshipStore } from "./RelationshipStore.js"
import * as WebSocketConnection from "./WebSocketConnection.js"

export type { HandshakeServerOptions } from "./HandshakeServerOptions.js"

/** The path the handshake is served on. */
export const HANDSHAKE_PATH = "/ws/handshake"

/** One handshake in progress, as the admin status route shows it. */
export interface ActiveHandshake {
  readonly connection_id: string
  readonly started_at: string
  readonly state: HandshakeProtocol.SessionState
  readonly provider_npi: string | null
}

/** The consent handshake WebSocket endpoint. */
export class HandshakeServer extends Context.Tag("neuron/HandshakeServer")<HandshakeServer, {
  /** The route handler of `GET /ws/handshake`; mount it on the Neuron's router (or use `route`). */
  readonly handle: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  /** Handshakes in progress, the queued ones included (`state: "queued"`). */
  readonly activeSessions: Effect.Effect<ReadonlyArray<ActiveHandshake>>
}>() {}

/** What the handshake needs from the Neuron. */
export type HandshakeServerRequirements = ConsentVerifier | ProviderLookup | RelationshipStore | AuditLog

// Node's parser sets `upgrade` on the request it hands to the `upgrade` event (not in @types/node).
const isUpgrade = (incoming: IncomingMessage) => (incoming as { readonly upgrade?: boolean }).upgrade === true

/** Destroys an upgrade request's socket once the HTTP answer written to it has been flushed. */
const destroyAfterAnswer = (incoming: IncomingMessage) => {
  const socket = incoming.socket
  socket.once("finish", () => socket.destroy())
}

/** Builds the server; its scope owns the `ws` server and, on close, stops every handshake. */
export const make = (options: HandshakeServerOptions) =>
  Effect.gen(function*() {
    const settings = resolveOptions(options)
    const context = yield* Effect.context<HandshakeServerRequirements>()
    const wss = yield* WebSocketConnection.makeServer(settings)
    const admission = yield* Admission.make(settings.maxConcurrentHandshakes)
    const stopping = yield* Deferred.make<never, HandshakeOutcome.ServerStopping>()
    const drained = yield* Effect.makeLatch(true)
    const sessions = new Set<HandshakeProtocol.SessionInfo>()
    const retryAfter = String(Math.max(1, Math.ceil(Duration.toSeconds(settings.retryAfter))))

    const track = (session: HandshakeProtocol.SessionInfo) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          sessions.add(session)
          drained.unsafeClose()
        }),
        () =>
          Effect.sync(() => {
            sessions.delete(session)
            if (sessions.size === 0) drained.unsafeOpen()
          })
      )

    // On shutdown: queued upgrades get 503, running handshakes close with 1001; wait until all are gone.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Deferred.fail(stopping, new HandshakeOutcome.ServerStopping())
        yield* admission.close
        yield* drained.await
      })
    )

    const unavailable = (incoming: IncomingMessage, message: string) => {
      destroyAfterAnswer(incoming)
      return errorResponse(503, "SERVICE_UNAVAILABLE", message, { headers: { "retry-after": retryAfter } })
    }

    // An interrupted handler cannot return a response: the 503 is written on the Node response directly
    // (the platform then finds it ended and writes nothing more).
    const unavailableOnInterrupt = (request: HttpServerRequest.HttpServerRequest, incoming: IncomingMessage) =>
      Effect.sync(() => {
        const response = NodeHttpServerRequest.toServerResponse(request)
        if (response.headersSent || incoming.socket.destroyed) return
        destroyAfterAnswer(incoming)
        const body = JSON.stringify({ error: { code: "SERVICE_UNAVAILABLE", message: "the neuron is shutting down" } })
        response.writeHead(503, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "retry-after": retryAfter
        })
        response.end(body)
      })

    const serve = (
      request: HttpServerRequest.HttpServerRequest,
      incoming: IncomingMessage,
      session: HandshakeProtocol.SessionInfo
    ): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope | HandshakeServerRequirements> =>
      Effect.gen(function*() {
        const admitted = yield* admission.admit(settings.queueTimeout).pipe(
          Effect.onInterrupt(() => unavailableOnInterrupt(request, incoming))
        )
        if (admitted === "timeout") return unavailable(incoming, "too many handshakes in progress: retry later")
        if (admitted === "closed") return unavailable(incoming, "the neuron is shutting down")

        const upgraded = yield* WebSocketConnection.upgrade(wss, incoming)
        if (Option.isNone(upgraded)) return HttpServerResponse.empty()
        const connection = upgraded.value
        session.state = "awaiting_auth"
        const protocol = HandshakeOutcome.started(session).pipe(
          Effect.zipRight(HandshakeProtocol.run({
            session,
            next: connection.next,
            poll: connection.poll,
            send: (message) => connection.send(encodeServerMessage(message))
          }, settings)),
          Effect.raceFirst(Deferred.await(stopping))
        )
        yield* Effect.uninterruptibleMask((restore) =>
          restore(protocol).pipe(
            Effect.exit,
            Effect.flatMap((exit) => HandshakeOutcome.finish(session, connection, exit))
          )
        )
        // The socket is closed by the time the scope has closed: this empty answer is never written.
        return HttpServerResponse.empty()
      })

    const allowed = Option.map(settings.allowedOrigins, (list) => new Set(list))

    const handle = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const incoming = NodeHttpServerRequest.toIncomingMessage(request)
      const origin = request.headers["origin"]
      if (
        origin !== undefined && Option.isSome(allowed) &&
        !allowed.value.has(normalizeOrigin(origin))
      ) {
        if (isUpgrade(incoming)) destroyAfterAnswer(incoming)
        return errorResponse(403, "FORBIDDEN", "this Origin is not allowed to open a handshake")
      }
      if (!isUpgrade(incoming)) {
        return errorResponse(426, "UPGRADE_REQUIRED", "GET /ws/handshake is a WebSocket endpoint", {
          headers: { upgrade: "websocket" }
        })
      }
      const session: HandshakeProtocol.SessionInfo = {
        connection_id: randomUUID(),
        started_at: DateTime.formatIso(yield* DateTime.now),
        remote_address: Option.getOrNull(request.remoteAddress),
        state: "queued",
        provider_npi: null,
        patient_agent_id: null,
        key_fingerprint: null
      }
      yield* track(session)
      return yield* serve(request, incoming, session).pipe(
        Effect.annotateLogs({ connection_id: session.connection_id })
      )
    }).pipe(
      Effect.scoped,
      Effect.provide(context),
      Effect.annotateLogs({ service: "HandshakeServer" })
    )

    const activeSessions = Effect.sync(() =>
      Array.from(sessions, (s): ActiveHandshake => ({
        connection_id: s.connection_id,
        started_at: s.started_at,
        state: s.state,
        provider_npi: s.provider_npi
      }))
    )

    return HandshakeServer.of({ handle, activeSessions })
  })

/** The server with the given options. */
export const layer = (
  options: HandshakeServerOptions
): Layer.Layer<HandshakeServer, never, HandshakeServerRequirements> => Layer.scoped(HandshakeServer, make(options))

/** The server configured from the environment (`NEURON_*`, PROTOCOL.md section 5). */
export const layerConfig = (
  overrides?: Partial<HandshakeServerOptions>
): Layer.Layer<HandshakeServer, ConfigError.ConfigError, HandshakeServerRequirements> =>
  Layer.scoped(HandshakeServer, Effect.flatMap(optionsConfig, (options) => make({ ...options, ...overrides })))

/**
 * Adds `GET /ws/handshake` to the application's `HttpLayerRouter`: compose it with the other routes and
 * serve them together, e.g. `HttpLayerRouter.serve(Layer.mergeAll(route, ApiRoutes))`.
 */
export const route: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | HandshakeServer> = HttpLayerRouter.use(
  (router) => Effect.flatMap(HandshakeServer, (server) => router.add("GET", HANDSHAKE_PATH, server.handle))
)
