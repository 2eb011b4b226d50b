/**
 * The WebSocket half of a handshake connection, on `ws` directly (see docs/handshake.md, "Upgrade"):
 * our own `WebSocketServer` in `noServer` mode, so that the frame limit (1009), UTF-8 validation (1007),
 * no compression and the close time-out are ours to set; the platform's upgrade uses a `WebSocketServer`
 * with `ws` defaults (100 MiB frames) that cannot be configured.
 *
 * Listeners are attached inside the upgrade callback, before anything else runs: a frame the client sent
 * while its upgrade waited in the queue (kept in the paused socket) is read by them, and an `error` event
 * always has a listener (an EventEmitter `error` without one would be thrown and take the process down).
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import type { IncomingMessage } from "node:http"
import { WebSocket, WebSocketServer } from "ws"
import type { Connection as ProtocolConnection, Inbound } from "./HandshakeProtocol.js"

/** Limits of the handshake's WebSocket server. */
export interface WebSocketLimits {
  /** The largest accepted frame (or message) in bytes: larger closes with 1009. */
  readonly maxPayloadBytes: number
  /** How long to wait for the peer's close frame (or TCP close) after ours before dropping the socket. */
  readonly closeTimeout: Duration.Duration
}

/** The `ws` server used only for `handleUpgrade`; closed with the scope. */
export const makeServer = (limits: WebSocketLimits): Effect.Effect<WebSocketServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload: limits.maxPayloadBytes,
        perMessageDeflate: false,
        skipUTF8Validation: false,
        // Not in @types/ws 8.18, in ws 8.23.
        ...({ closeTimeout: Duration.toMillis(limits.closeTimeout) } as {})
      })
    ),
    (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
  )

/** An upgraded connection (methods: call them on the connection). */
export interface Upgraded extends ProtocolConnection {
  /** Tells the reader the server is stopping: `Stopping` comes before anything still unread. */
  stop(): void
  /** `write` as an Effect. */
  send(text: string): Effect.Effect<void>
  /** Starts the closing handshake with `code` (once; later calls do nothing). */
  end(code: number, reason: string): void
  /** `end` as an Effect. */
  close(code: number, reason: string): Effect.Effect<void>
  /** Closes the socket with 1001 (going away) if it is still open: for a connection whose handshake ended without closing it. */
  goingAway(): void
}

/** auth, challenge_response, and one more to refuse. */
const MAX_FRAMES = 3

/** How `ws` reports a refused frame, as a close code and a name for the audit log. */
const classify = (error: unknown): { readonly closeCode: number; readonly code: string } => {
  switch ((error as { code?: unknown } | null)?.code) {
    case "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH":
      return { closeCode: 1009, code: "FRAME_TOO_LARGE" }
    case "WS_ERR_INVALID_UTF8":
      return { closeCode: 1007, code: "INVALID_UTF8" }
    default:
      return { closeCode: 1002, code: "PROTOCOL_ERROR" }
  }
}

const TIMED_OUT: Inbound = { _tag: "TimedOut" }

/** The Clock of the default services: a fiber runs with it unless a test (TestClock) or the host replaces it. */
const liveClock = Effect.runSync(Effect.clock)

/** The longest delay a Node timer takes (2^31 - 1 ms). */
const MAX_TIMER_MILLIS = 2_147_483_647

const STOPPING: Inbound = { _tag: "Stopping" }

/**
 * One upgraded connection: its events for a single reader, its deadline, its socket. The reader is called back
 * (`whenReady`) when an event arrives: a connection waiting for its next frame holds no fiber, so 10 000 idle
 * connections hold 10 000 sockets and timers, not 10 000 suspended fibers. Terminal events (`Ended`,
 * `TimedOut`, `Stopping`) stay: every later read sees them. A class rather than closures: a waiting connection
 * holds only these fields (measured per connection with 10 000 held).
 */
class Connection implements Upgraded {
  private readonly events: Array<Inbound> = []
  private ready: (() => void) | undefined = undefined
  // What waits for the deadline: a timer under the live Clock, else a fiber sleeping on the Clock.
  private timeout: ReturnType<typeof setTimeout> | undefined = undefined
  private timer: Fiber.RuntimeFiber<void> | undefined = undefined

  constructor(
    private readonly socket: WebSocket,
    private readonly clock: Clock.Clock,
    /** Runs the fiber that sleeps on a Clock other than the live one (see `setDeadline`). */
    private readonly fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  ) {}

  offer(event: Inbound, first = false): void {
    if (first) this.events.unshift(event)
    else this.events.push(event)
    const ready = this.ready
    if (ready !== undefined) {
      this.ready = undefined
      ready()
    }
  }

  whenReady(callback: () => void): void {
    if (this.events.length > 0) callback()
    else this.ready = callback
  }

  poll(): Inbound | undefined {
    const event = this.events[0]
    if (event !== undefined && event._tag === "Frame") this.events.shift()
    return event
  }

  disarm(): void {
    if (this.timeout !== undefined) clearTimeout(this.timeout)
    this.timer?.unsafeInterruptAsFork(FiberId.none)
    this.timeout = undefined
    this.timer = undefined
  }

  // Under the live Clock a plain timer; under another Clock (TestClock in tests) a fiber sleeping on it,
  // replaced when the deadline moves and interrupted without waiting (it only sleeps). Forking and
  // interrupting that fiber twice per handshake measured about 100 µs of CPU; the timer costs next to nothing.
  deadline(atMillis: number): void {
    this.disarm()
    const i = this.events.indexOf(TIMED_OUT)
    if (i >= 0) this.events.splice(i, 1)
    if (!Number.isFinite(atMillis)) return
    const delay = Math.max(0, atMillis - this.clock.unsafeCurrentTimeMillis())
    if (this.clock === liveClock) {
      // Longer than a Node timer can wait (about 24.8 days): never, like the live Clock's own sleep.
      if (delay <= MAX_TIMER_MILLIS) this.timeout = setTimeout(() => this.offer(TIMED_OUT), delay)
      return
    }
    this.timer = this.fork(
      Effect.zipRight(this.clock.sleep(Duration.millis(delay)), Effect.sync(() => this.offer(TIMED_OUT)))
    )
  }

  setDeadline(atMillis: number): Effect.Effect<void> {
    return Effect.sync(() => this.deadline(atMillis))
  }

  stop(): void {
    this.offer(STOPPING, true)
  }

  write(text: string): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(text)
  }

  send(text: string): Effect.Effect<void> {
    return Effect.sync(() => this.write(text))
  }

  end(code: number, reason: string): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(code, reason)
  }

  close(code: number, reason: string): Effect.Effect<void> {
    return Effect.sync(() => this.end(code, reason))
  }

  goingAway(): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(1001, "going away")
  }
}

/** Feeds the socket's events to the connection. Listeners attached before anything else runs (see above). */
const listen = (connection: Connection, ws: WebSocket, onClosed: () => void) => {
  let refused: { readonly closeCode: number; readonly code: string } | undefined
  let frames = 0
  ws.on("message", (data, isBinary) => {
    // The protocol reads at most three frames (the third is already an error): more are dropped
    // unread, so a client flooding frames cannot make the server hold them in memory.
    if (++frames > MAX_FRAMES) return
    const frame = isBinary
      ? new Uint8Array(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer))
      : data.toString()
    connection.offer({ _tag: "Frame", data: frame })
  })
  ws.on("error", (error) => {
    refused = classify(error)
  })
  ws.once("close", (closeCode) => {
    connection.disarm()
    connection.offer({ _tag: "Ended", ...(refused ?? { closeCode, code: "CONNECTION_CLOSED" }) })
    onClosed()
  })
}

/**
 * Completes the WebSocket upgrade of `incoming` (the 101 is written now), with a first deadline at
 * `deadlineMillis` (Clock time). Undefined when the client went away or `ws` refused the upgrade request (it
 * answers 400/405 itself). `onClosed` is called once the upgraded socket is gone: after the closing handshake,
 * the peer's TCP close, or the close time-out; the holder of the connection releases what it holds there.
 *
 * Plain code, not an Effect: `handleUpgrade` completes synchronously (no `verifyClient`), so the connection
 * needs no fiber, scope or finalizer of its own until its first event arrives (BENCHMARKS.md, issue 11). Whoever
 * upgrades owns the socket: the HandshakeServer closes every connection it holds (1001) when its scope closes.
 */
export const upgrade = (
  wss: WebSocketServer,
  incoming: IncomingMessage,
  /** The bytes read past the upgrade request (the Node `upgrade` event's `head`): the first frame's start. */
  head: Buffer,
  deadlineMillis: number,
  clock: Clock.Clock,
  fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>,
  onClosed: () => void
): Upgraded | undefined => {
  const socket = incoming.socket
  if (socket.destroyed) return undefined
  let connection: Connection | undefined
  wss.handleUpgrade(incoming, socket, head, (ws) => {
    connection = new Connection(ws, clock, fork)
    listen(connection, ws, onClosed)
    connection.deadline(deadlineMillis)
  })
  // Not upgraded by now: `ws` found the socket closed or refused the request, and destroyed the socket.
  return connection
}
