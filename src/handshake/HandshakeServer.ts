/**
 * HandshakeServer: `GET /ws/handshake` (PROTOCOL.md section 2) on the Neuron's HTTP server. The WebSocket
 * upgrades of that path are taken from the Node server's `upgrade` event, ahead of the HTTP platform (see
 * docs/handshake.md, "Upgrade"): the Origin rule (403), the concurrency ceiling (FIFO, 503 + Retry-After past
 * the queue time-out), then `ws`'s `handleUpgrade` on our own `ws` server (frame limit, see
 * WebSocketConnection.ts), the HandshakeProtocol state machine and the close with the code of its outcome.
 * Every other upgrade, and every plain request, stays with the platform (a plain GET of the path is answered
 * 426 by the route). Each connection has a scope of its own (slot, socket, session); closing the server's scope
 * answers queued upgrades 503, stops open handshakes (1001) and waits until every connection is gone.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { clientAbortFiberId } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import { randomUUID } from "node:crypto"
import { type IncomingMessage, type Server, STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { ConsentVerifier } from "../consent/ConsentVerifier.js"
import { errorResponse } from "../http/ErrorBody.js"
import { nodeServerOf } from "../http/NodeServer.js"
import { NeuronMetrics } from "../observability/NeuronMetrics.js"
import * as Relationships from "../relationships/Relationships.js"
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
  /**
   * The route handler of `GET /ws/handshake` for plain requests (426, or 403 for an Origin outside the
   * allowlist); mount it on the Neuron's router (or use `route`). Upgrades never reach it while the server
   * takes them (`takeUpgrades`); one that does is answered 503.
   */
  readonly handle: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  /**
   * Takes the `/ws/handshake` upgrades of the Node server behind `server` until the scope closes (once per
   * server: later calls do nothing). The Layer does it itself when an `HttpServer` is in its context.
   */
  readonly takeUpgrades: (server: HttpServer.HttpServer) => Effect.Effect<void, never, Scope.Scope>
  /** Handshakes in progress, the queued ones included (`state: "queued"`). */
  readonly activeSessions: Effect.Effect<ReadonlyArray<ActiveHandshake>>
  /**
   * Handshakes ended so far by outcome: `completed`, the failure's code (`AUTH_TIMEOUT`, `CONSENT_FAILED`, ...),
   * `FORBIDDEN` (403, Origin) and `SERVICE_UNAVAILABLE` (503, queue time-out or shutdown).
   */
  readonly outcomes: Effect.Effect<ReadonlyMap<string, number>>
}>() {}

/** What the handshake needs from the Neuron. */
export type HandshakeServerRequirements = ConsentVerifier | ProviderLookup | RelationshipStore | AuditLog

/** The request's path without its query. */
const pathOf = (url: string | undefined) => {
  if (url === undefined) return ""
  const q = url.indexOf("?")
  return q < 0 ? url : url.slice(0, q)
}

/**
 * Answers an upgrade request with an HTTP error in the project's error body (ErrorBody.ts), on the raw socket
 * (there is no Node response for an upgrade), and closes the socket once it is written.
 */
const answer = (
  socket: Duplex,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {}
) => {
  if (socket.destroyed) return
  const body = JSON.stringify({ error: { code, message } })
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n`
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`
  socket.end(head + "\r\n" + body, () => socket.destroy())
}

/** What an upgrade that waits in the queue reads meanwhile. */
interface Waiting {
  /** The bytes past the upgrade request: the event's `head` and what arrived while queued. Stops reading. */
  readonly head: () => Buffer
  /** Lets the socket flow again (once `ws` listens to it). */
  readonly resume: () => void
}

/**
 * While an upgrade waits in the queue its socket is read, so that a client that leaves (FIN) is seen and gives
 * its place up: an unread socket never reports the peer's end. What arrives is kept (up to `limit`, then the
 * socket is paused: TCP holds the rest) and handed to `ws` with the head. An upgrade admitted at once is
 * upgraded right at its event (nothing to read before `ws` takes the socket).
 */
const waitingFor = (socket: Duplex, head: Buffer, gone: () => void, limit = 1 << 17): Waiting => {
  const chunks: Array<Buffer> = [head]
  let bytes = head.length
  let reading = true
  let paused = false
  const onData = (chunk: Buffer) => {
    chunks.push(chunk)
    bytes += chunk.length
    if (bytes > limit) socket.pause()
  }
  socket.on("data", onData)
  socket.once("end", gone)
  return {
    head: () => {
      if (reading) {
        reading = false
        socket.off("data", onData)
        socket.off("end", gone)
        // Paused until `ws` has attached its listeners (attaching a listener does not resume a paused stream).
        socket.pause()
        paused = true
      }
      return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
    },
    resume: () => {
      if (reading) {
        reading = false
        socket.off("data", onData)
        socket.off("end", gone)
      }
      if (paused && !socket.destroyed) {
        paused = false
        socket.resume()
      }
    }
  }
}

/** A handshake in progress; `connection` is set once its socket is upgraded. */
interface Tracked {
  readonly session: HandshakeProtocol.SessionInfo
  connection: WebSocketConnection.Upgraded | undefined
  /**
   * What keeps it tracked: its socket, and its fiber once started. Shutdown waits for both: the fiber's
   * outcome (its audit entries) is written after the socket may already be gone.
   */
  holds: number
}

/** The Tracer a fiber has unless the host installs one (OpenTelemetry...): spans are then recorded nowhere. */
const defaultTracer = Effect.runSync(Effect.tracer)

/** Builds the server; its scope owns the `ws` server and, on close, stops every handshake. */
export const make = (options: HandshakeServerOptions) =>
  Effect.gen(function*() {
    const settings = resolveOptions(options)
    const built = yield* Effect.runtime<never>()
    // Per handshake, a log line and spans cost more than the protocol's own Effect work: completions are
    // logged only with debug logging on, spans recorded only when the host installed a tracer.
    const logCompleted = LogLevel.lessThanEqual(
      FiberRefs.getOrDefault(built.fiberRefs, FiberRef.currentMinimumLogLevel),
      LogLevel.Debug
    )
    const tracer = yield* Effect.tracer
    const tracing = tracer !== defaultTracer &&
      FiberRefs.getOrDefault(built.fiberRefs, FiberRef.currentTracerEnabled)
    // The Clock the server was built with (a TestClock in tests), for the times taken outside a fiber.
    const clock = yield* Effect.clock
    // Taken once: a handshake uses them directly instead of looking them up in its context every time.
    const services: HandshakeProtocol.ProtocolServices & {
      readonly verifier: ConsentVerifier["Type"]
      readonly logCompleted: boolean
    } = {
      verifier: yield* ConsentVerifier,
      providers: yield* ProviderLookup,
      relationships: yield* RelationshipStore,
      audit: yield* AuditLog,
      // A `consent.revoke` first message is revoked exactly as `POST /v1/consent/revoke` does.
      revoke: (yield* Relationships.make).revoke,
      logCompleted
    }
    const wss = yield* WebSocketConnection.makeServer(settings)
    const admission = yield* Admission.make(settings.maxConcurrentHandshakes)
    const drained = yield* Effect.makeLatch(true)
    const sessions = new Set<Tracked>()
    const outcomes = new Map<string, number>()
    const count = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    let stopping = false
    const retryAfter = String(Math.max(1, Math.ceil(Duration.toSeconds(settings.retryAfter))))
    const authTimeoutMillis = Duration.toMillis(settings.authTimeout)
    const allowed = Option.map(settings.allowedOrigins, (list) => new Set(list))
    const originRefused = (origin: string | undefined) =>
      origin !== undefined && Option.isSome(allowed) && !allowed.value.has(normalizeOrigin(origin))

    // A handshake is tracked from its upgrade request until its socket is gone (or its upgrade refused).
    const track = (tracked: Tracked) => {
      sessions.add(tracked)
      drained.unsafeClose()
    }
    const untrack = (tracked: Tracked) => {
      sessions.delete(tracked)
      if (sessions.size === 0) drained.unsafeOpen()
    }
    const letGo = (tracked: Tracked) => {
      if (--tracked.holds === 0) untrack(tracked)
    }

    // On shutdown: queued upgrades get 503, running handshakes close with 1001 (their reader is told to stop
    // before anything else it has not read yet); wait until all are gone, their outcomes written (the services
    // they write to, built before this server, close after it).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        for (const tracked of sessions) tracked.connection?.stop()
        yield* admission.close
        yield* drained.await
      })
    )

    const unavailable = (socket: Duplex, message: string) => {
      count("SERVICE_UNAVAILABLE")
      answer(socket, 503, "SERVICE_UNAVAILABLE", message, { "retry-after": retryAfter })
    }

    // Upgrades and connections run in fibers of their own, started with the references (logger, Clock, tracer)
    // this server was built with. Their context is empty: the services are taken above, and every
    // `Context.add` on the way (a SQL transaction adds one) copies the whole context.
    const runFork = Runtime.runFork(Runtime.make({
      context: Context.empty(),
      fiberRefs: tracing
        ? built.fiberRefs
        : FiberRefs.updateAs(built.fiberRefs, {
          fiberId: FiberId.none,
          fiberRef: FiberRef.currentTracerEnabled,
          value: false
        }),
      runtimeFlags: built.runtimeFlags
    }))

    const metrics = yield* Effect.serviceOption(NeuronMetrics)

    /**
     * What ends a handshake in a fiber (nothing interrupts it: its outcome is always sent and recorded): runs
     * `ending`, then sends its message or refusal, closes, counts it and records its time in the latency
     * histogram (from the first event, `start`). With a tracer installed, `span` is the handshake's (a root span:
     * the upgrade request has none), named by its outcome.
     */
    const finishing = (
      session: HandshakeProtocol.SessionInfo,
      connection: WebSocketConnection.Upgraded,
      ending: HandshakeProtocol.Ending,
      start: bigint,
      span: Tracer.Span | undefined
    ) => {
      const ended = Effect.flatMap(
        Effect.exit(ending),
        (exit) =>
          Effect.map(
            HandshakeOutcome.finish(session, connection, exit, services),
            (outcome) => recorded(session, outcome, start, span)
          )
      )
      return span === undefined ? ended : Effect.withParentSpan(ended, span)
    }

    /** Counts an ended handshake, records its time from its first event (`start`), ends its span. */
    const recorded = (
      session: HandshakeProtocol.SessionInfo,
      outcome: string,
      start: bigint,
      span: Tracer.Span | undefined
    ) => {
      count(outcome)
      const end = clock.unsafeCurrentTimeNanos()
      if (Option.isSome(metrics)) metrics.value.handshake(outcome, Number(end - start) / 1e9)
      if (span !== undefined) {
        span.attribute("handshake.outcome", outcome)
        span.attribute("handshake.provider_npi", session.provider_npi ?? "")
        span.end(end, Exit.void)
      }
    }

    /**
     * Serves an upgraded connection from its first event: the handshake's steps run on the socket's callbacks
     * (HandshakeProtocol.Handshake); a completion is answered from the group commit's outcome (`completed`), a
     * refusal at once and recorded once its audit entries are written (`refused`), and one fiber ends a revocation,
     * a stop or an unexpected failure (`end`). Without a tracer no span is made (making one
     * captures a stack trace, about 30 µs per handshake: BENCHMARKS.md, issue 11).
     */
    const serve = (tracked: Tracked, connection: WebSocketConnection.Upgraded) => {
      const session = tracked.session
      const start = clock.unsafeCurrentTimeNanos()
      let span: Tracer.Span | undefined
      if (tracing) {
        span = tracer.span("HandshakeServer.handshake", Option.none(), Context.empty(), [], start, "server")
        span.attribute("handshake.connection_id", session.connection_id)
      }
      const withSpan = <A, E>(effect: Effect.Effect<A, E>) =>
        span === undefined ? effect : Effect.withParentSpan(effect, span)
      // Held until the outcome is written: shutdown waits for it (the socket may be gone before).
      tracked.holds++
      // Started on the scheduler's next turn, not inside the socket's callback: a frame that came in the same
      // read as the last expected message is queued by then, and refused (the check a revocation starts with).
      const end = (ending: HandshakeProtocol.Ending) => {
        runFork(
          Effect.ensuring(
            finishing(session, connection, ending, start, span),
            Effect.sync(() => {
              // Its outcome closes the socket; should anything end it without doing so, the socket still goes.
              connection.goingAway()
              letGo(tracked)
            })
          ),
          { immediate: false }
        )
      }
      new HandshakeProtocol.Handshake(session, connection, {
        options: settings,
        services,
        clock,
        await: (effect, onExit) => runFork(withSpan(effect)).addObserver(onExit),
        end,
        // A refusal needs no fiber either: its entries join the audit log's group commit.
        refused: (refusal) => {
          try {
            services.verifier.forgetNow(session.connection_id)
            const { closeCode, code, message } = HandshakeOutcome.sendRefusal(connection, refusal)
            services.audit.appendAllNow(
              HandshakeOutcome.failedEntries(session, code, closeCode, message),
              clock.unsafeCurrentTimeMillis(),
              (written) => {
                // Called by the audit log's writer: nothing may escape from here.
                try {
                  // The peer has its answer already; a failed audit write is reported, not turned into another error.
                  if (Exit.isFailure(written)) runFork(HandshakeOutcome.unwritten(session, written.cause))
                  recorded(session, code, start, span)
                } catch (defect) {
                  runFork(Effect.logError("recording a refused handshake failed", defect))
                } finally {
                  connection.goingAway()
                  letGo(tracked)
                }
              }
            )
          } catch (defect) {
            end(Effect.die(defect))
          }
        },
        // A completion needs no fiber: its audit entries are written with its relationship.
        completed: (message) => {
          try {
            HandshakeOutcome.sendComplete(connection, message)
          } catch (defect) {
            return end(Effect.die(defect))
          }
          try {
            recorded(session, "completed", start, span)
            if (services.logCompleted) runFork(HandshakeOutcome.logCompletion(session, message))
          } finally {
            letGo(tracked)
          }
        }
      }).step()
    }

    // The deadline's sleeping fiber under a Clock other than the live one (a TestClock in tests).
    const forkDeadline = (effect: Effect.Effect<void>) => runFork(effect)

    /**
     * Upgrades an admitted request (its slot held) and serves the connection from its first event: plain code
     * at the `upgrade` event, no fiber until a frame arrives (BENCHMARKS.md, issue 11). The slot and the
     * session are given back when the socket is gone, whoever closed it. False when the client went away or
     * `ws` refused the request (the slot is given back at once).
     */
    const upgradeAdmitted = (incoming: IncomingMessage, tracked: Tracked, head: Buffer): boolean => {
      const session = tracked.session
      const upgradedAt = clock.unsafeCurrentTimeMillis()
      const released = () => {
        admission.release()
        letGo(tracked)
      }
      const connection = WebSocketConnection.upgrade(
        wss,
        incoming,
        head,
        upgradedAt + authTimeoutMillis,
        clock,
        forkDeadline,
        released
      )
      if (connection === undefined) {
        released()
        return false
      }
      session.state = "awaiting_auth"
      session.upgraded_at = new Date(upgradedAt).toISOString()
      tracked.connection = connection
      if (stopping) connection.stop()
      // Served from its first event: a waiting connection holds no fiber.
      connection.whenReady(() => serve(tracked, connection))
      return true
    }

    /**
     * An upgrade that found every slot taken waits in line (FIFO, at most the queue time-out) in a fiber of
     * its own, then is upgraded, answered 503, or dropped when the client went away meanwhile.
     */
    const queue = (incoming: IncomingMessage, socket: Duplex, head: Buffer, tracked: Tracked) => {
      // A client that leaves while its upgrade waits in the queue gives its place up.
      // (Set after `runFork`, which may run the fiber to its end before it returns.)
      const running: { fiber?: Fiber.RuntimeFiber<void> } = {}
      const gone = () => running.fiber?.unsafeInterruptAsFork(clientAbortFiberId)
      socket.once("close", gone)
      const waiting = waitingFor(socket, head, gone)
      running.fiber = runFork(Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.exit(restore(admission.admit(settings.queueTimeout))), (exit) =>
          Effect.sync(() => {
            socket.off("close", gone)
            if (Exit.isSuccess(exit) && exit.value === "admitted") {
              upgradeAdmitted(incoming, tracked, waiting.head())
              return waiting.resume()
            }
            waiting.resume()
            untrack(tracked)
            if (Exit.isFailure(exit)) {
              // Interrupted: the client left while queued.
              if (!socket.destroyed) socket.destroy()
              return
            }
            unavailable(
              socket,
              exit.value === "timeout"
                ? "too many handshakes in progress: retry later"
                : "the neuron is shutting down"
            )
          }))
      ))
    }

    /** One upgrade of the handshake path, from the Node server's `upgrade` event. */
    const accept = (incoming: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (originRefused(incoming.headers.origin)) {
        count("FORBIDDEN")
        return answer(socket, 403, "FORBIDDEN", "this Origin is not allowed to open a handshake")
      }
      if (stopping) {
        return unavailable(socket, "the neuron is shutting down")
      }
      const tracked: Tracked = {
        session: {
          connection_id: randomUUID(),
          started_at: new Date(clock.unsafeCurrentTimeMillis()).toISOString(),
          remote_address: incoming.socket.remoteAddress ?? null,
          state: "queued",
          provider_npi: null,
          patient_agent_id: null,
          key_fingerprint: null,
          upgraded_at: null
        },
        connection: undefined,
        holds: 1
      }
      track(tracked)
      if (admission.tryTake()) {
        upgradeAdmitted(incoming, tracked, head)
      } else queue(incoming, socket, head, tracked)
    }

    // The Node servers whose upgrades this server takes, and how to give each back.
    const taken = new WeakSet<Server>()
    const takeUpgrades = (server: HttpServer.HttpServer): Effect.Effect<void, never, Scope.Scope> =>
      Effect.suspend(() => {
        const node = nodeServerOf(server)
        if (Option.isNone(node)) {
          return Effect.dieMessage(
            "HandshakeServer: the HttpServer is not a listening Node http.Server of this process " +
              "(@effect/platform-node's NodeHttpServer): its WebSocket upgrades cannot be taken"
          )
        }
        const target = node.value
        if (taken.has(target)) {
          return Effect.void
        }
        return Effect.acquireRelease(
          Effect.sync(() => {
            taken.add(target)
            // The platform's NodeHttpServer listens for `upgrade` too and would run every upgrade through the
            // HTTP app as well: the handshake's are taken where the event is emitted, so that exactly one
            // handler serves each. Any other upgrade goes on to every listener as before.
            const emit = target.emit
            let active = true
            const intercepted = function(this: Server, event: string | symbol, ...args: Array<any>): boolean {
              if (active && event === "upgrade" && pathOf((args[0] as IncomingMessage).url) === HANDSHAKE_PATH) {
                accept(args[0], args[1], args[2])
                return true
              }
              return emit.apply(this, [event, ...args] as any)
            }
            target.emit = intercepted as typeof target.emit
            return () => {
              taken.delete(target)
              // Restored unless someone wrapped `emit` after us: then ours only steps aside.
              if (target.emit === intercepted) {
                target.emit = emit
              } else active = false
            }
          }),
          (release) =>
            Effect.sync(release)
        )
      })

    const handle = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
      if (originRefused(request.headers["origin"])) {
        return errorResponse(403, "FORBIDDEN", "this Origin is not allowed to open a handshake")
      }
      if (request.headers["upgrade"] !== undefined) {
        // Only when the upgrades are not taken from the Node server (not given one, or stopped).
        return errorResponse(503, "SERVICE_UNAVAILABLE", "the handshake is not being served", {
          headers: { "retry-after": retryAfter, connection: "close" }
        })
      }
      return errorResponse(426, "UPGRADE_REQUIRED", "GET /ws/handshake is a WebSocket endpoint", {
        headers: { upgrade: "websocket" }
      })
    })

    const activeSessions = Effect.sync(() =>
      Array.from(sessions, ({ session: s }): ActiveHandshake => ({
        connection_id: s.connection_id,
        started_at: s.started_at,
        state: s.state,
        provider_npi: s.provider_npi
      }))
    )

    const service = HandshakeServer.of({
      handle,
      takeUpgrades,
      activeSessions,
      outcomes: Effect.sync(() => new Map(outcomes))
    })
    // On the host's server when it has one (the Neuron's Layer); otherwise `route` does it.
    const server = yield* Effect.serviceOption(HttpServer.HttpServer)
    if (Option.isSome(server)) yield* takeUpgrades(server.value)
    return service
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
  (router) =>
    Effect.gen(function*() {
      const server = yield* HandshakeServer
      yield* router.add("GET", HANDSHAKE_PATH, server.handle)
      // The upgrades, from the Node server the router is served on (when the server's Layer had none).
      const http = yield* Effect.serviceOption(HttpServer.HttpServer)
      if (Option.isSome(http)) yield* server.takeUpgrades(http.value)
    })
)
