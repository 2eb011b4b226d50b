/**
 * HandshakeServer: `GET /ws/handshake` (PROTOCOL.md section 2) on the Neuron's HTTP server. It checks the
 * Origin, queues the upgrade behind the concurrency ceiling (FIFO, 503 + Retry-After past the queue time-out),
 * upgrades with its own `ws` server (frame limit, see WebSocketConnection.ts), runs the HandshakeProtocol state
 * machine and closes with the code of its outcome. A queued upgrade waits in its HTTP request; an upgraded
 * socket is handed to a fiber of its own that owns the connection's scope (slot, socket, session), so that
 * the request ends and a waiting connection holds little memory. Closing the server's scope answers queued
 * upgrades 503 and stops open handshakes (1001), then waits until every connection is gone.
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { ConsentVerifier } from "../consent/ConsentVerifier.js"
import { errorResponse } from "../http/ErrorBody.js"
import { AuditLog } from "../store/AuditLog.js"
import * as Admission from "./Admission.js"
import * as HandshakeOutcome from "./HandshakeOutcome.js"
import * as HandshakeProtocol from "./HandshakeProtocol.js"
import {
  type HandshakeServerOptions,
  normalizeOrigin,
  optionsConfig,
  resolveOptions
} from "./HandshakeServerOptions.js"
import { ProviderLookup } from "./ProviderLookup.js"
import { RelationshipStore } from "./RelationshipStore.js"
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

/** A handshake in progress; `connection` is set once its socket is upgraded. */
interface Tracked {
  readonly session: HandshakeProtocol.SessionInfo
  connection: WebSocketConnection.Upgraded | undefined
}

/** Builds the server; its scope owns the `ws` server and, on close, stops every handshake. */
export const make = (options: HandshakeServerOptions) =>
  Effect.gen(function*() {
    const settings = resolveOptions(options)
    // Taken once: a handshake uses them directly instead of looking them up in its context every time.
    const services: HandshakeProtocol.ProtocolServices = {
      verifier: yield* ConsentVerifier,
      providers: yield* ProviderLookup,
      relationships: yield* RelationshipStore,
      audit: yield* AuditLog
    }
    const wss = yield* WebSocketConnection.makeServer(settings)
    const admission = yield* Admission.make(settings.maxConcurrentHandshakes)
    const drained = yield* Effect.makeLatch(true)
    const sessions = new Set<Tracked>()
    let stopping = false
    const retryAfter = String(Math.max(1, Math.ceil(Duration.toSeconds(settings.retryAfter))))
    const authTimeoutMillis = Duration.toMillis(settings.authTimeout)

    // Registered on the connection's scope directly: cheaper than `acquireRelease` (no fiber-reference snapshot).
    const track = (tracked: Tracked) =>
      Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) => {
        sessions.add(tracked)
        drained.unsafeClose()
        return Scope.addFinalizer(
          scope,
          Effect.sync(() => {
            sessions.delete(tracked)
            if (sessions.size === 0) drained.unsafeOpen()
          })
        )
      }))

    // On shutdown: queued upgrades get 503, running handshakes close with 1001 (their reader is told to stop
    // before anything else it has not read yet); wait until all are gone.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        for (const tracked of sessions) tracked.connection?.stop()
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

    // The connections run in fibers of their own, started with the references (logger, Clock, tracer) this
    // server was built with: a connection must not keep the HTTP request's fiber (and everything it references)
    // alive while it waits. Their context is empty: the services are taken above, and every `Context.add` on
    // the way (a SQL transaction adds two) copies the whole context, which measured in the CPU per handshake.
    const built = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(
      Runtime.make({ context: Context.empty(), fiberRefs: built.fiberRefs, runtimeFlags: built.runtimeFlags })
    )

    /** Serves an upgraded connection to its end; runs uninterruptibly, in its own fiber. */
    const serveConnection = (session: HandshakeProtocol.SessionInfo, connection: WebSocketConnection.Upgraded) =>
      Effect.flatMap(
        Effect.exit(HandshakeProtocol.run(session, connection, settings, services)),
        (exit) => HandshakeOutcome.finish(session, connection, exit, services)
      )

    type Opened =
      | { readonly _tag: "Answer"; readonly response: HttpServerResponse.HttpServerResponse }
      | { readonly _tag: "Upgraded"; readonly connection: WebSocketConnection.Upgraded }

    /** Waits for a slot and upgrades; everything acquired is released with the scope. */
    const open = (
      request: HttpServerRequest.HttpServerRequest,
      incoming: IncomingMessage,
      tracked: Tracked
    ): Effect.Effect<Opened, never, Scope.Scope> =>
      Effect.gen(function*() {
        const session = tracked.session
        yield* track(tracked)
        const admitted = yield* admission.admit(settings.queueTimeout).pipe(
          Effect.onInterrupt(() => unavailableOnInterrupt(request, incoming))
        )
        if (admitted !== "admitted") {
          const message = admitted === "timeout"
            ? "too many handshakes in progress: retry later"
            : "the neuron is shutting down"
          return { _tag: "Answer", response: unavailable(incoming, message) } as const
        }
        const upgradedAt = yield* Clock.currentTimeMillis
        const upgraded = yield* WebSocketConnection.upgrade(wss, incoming, upgradedAt + authTimeoutMillis)
        if (Option.isNone(upgraded)) return { _tag: "Answer", response: HttpServerResponse.empty() } as const
        const connection = upgraded.value
        session.state = "awaiting_auth"
        session.upgraded_at = new Date(upgradedAt).toISOString()
        tracked.connection = connection
        if (stopping) connection.stop()
        return { _tag: "Upgraded", connection } as const
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
      const tracked: Tracked = {
        session: {
          connection_id: randomUUID(),
          started_at: DateTime.formatIso(yield* DateTime.now),
          remote_address: Option.getOrNull(request.remoteAddress),
          state: "queued",
          provider_npi: null,
          patient_agent_id: null,
          key_fingerprint: null,
          upgraded_at: null
        },
        connection: undefined
      }
      // The scope of the connection: this request's until the upgrade, then the connection fiber's, which closes
      // it at the end (the socket closed and waited for, the slot released, the session untracked).
      const scope = yield* Scope.make()
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.exit(Scope.extend(restore(open(request, incoming, tracked)), scope)), (exit) => {
          if (Exit.isFailure(exit)) return Effect.zipRight(Scope.close(scope, exit), Effect.failCause(exit.cause))
          const opened = exit.value
          if (opened._tag === "Answer") return Effect.as(Scope.close(scope, Exit.void), opened.response)
          // The platform answers the request once this handler returns. It does not know the socket was
          // upgraded (we used our own `ws` server), so its answer must not reach the socket: the Node response
          // is detached from it, and what the platform writes into it stays buffered and is dropped.
          NodeHttpServerRequest.toServerResponse(request).detachSocket(incoming.socket)
          // The platform attaches its own `close` listener once this handler has first returned (or earlier,
          // when the upgrade waited in the queue): dropped on the next turn, see `dropForeignCloseListeners`.
          setImmediate(() => opened.connection.dropForeignCloseListeners())
          opened.connection.whenReady(() =>
            runFork(Effect.ensuring(serveConnection(tracked.session, opened.connection), Scope.close(scope, Exit.void)))
          )
          return Effect.succeed(HttpServerResponse.empty())
        })
      )
    })

    const activeSessions = Effect.sync(() =>
      Array.from(sessions, ({ session: s }): ActiveHandshake => ({
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
