/**
 * A raw `ws` client for protocol tests: send anything (binary, invalid UTF-8, unmasked frames), read every
 * message, see the close code, and read refused upgrades (status, headers, body).
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import { WebSocket } from "ws"

/** What a raw client sees. */
export type RawEvent =
  | { readonly _tag: "Open" }
  | { readonly _tag: "Message"; readonly text: string; readonly binary: boolean }
  | { readonly _tag: "Close"; readonly code: number; readonly reason: string }
  | { readonly _tag: "Error"; readonly message: string }
  | {
    readonly _tag: "Status"
    readonly status: number
    readonly headers: Record<string, string | Array<string> | undefined>
    readonly body: string
  }

/** A connected (or refused) raw client. */
export interface RawClient {
  readonly ws: WebSocket
  /** The next event of any kind. */
  readonly next: Effect.Effect<RawEvent>
  /** The next message, parsed as JSON; dies on any other event. */
  readonly message: Effect.Effect<any>
  /** Waits for the close and returns its code (skipping messages). */
  readonly closed: Effect.Effect<{ readonly code: number; readonly reason: string }>
  readonly send: (data: string | Buffer, options?: { readonly binary?: boolean }) => Effect.Effect<void>
  readonly sendJson: (value: unknown) => Effect.Effect<void>
  /** Writes bytes on the TCP socket under the WebSocket framing (for malformed frames). */
  readonly writeRaw: (bytes: Buffer) => Effect.Effect<void>
}

/** Opens a raw client; it is terminated when the scope closes. Does not wait for the upgrade. */
export const connect = (
  url: string,
  options?: { readonly origin?: string; readonly headers?: Record<string, string> }
): Effect.Effect<RawClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const events = yield* Queue.unbounded<RawEvent>()
    const offer = (e: RawEvent) => Queue.unsafeOffer(events, e)
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const ws = new WebSocket(url, {
          perMessageDeflate: false,
          ...(options?.origin === undefined ? {} : { origin: options.origin }),
          ...(options?.headers === undefined ? {} : { headers: options.headers })
        })
        ws.on("open", () => offer({ _tag: "Open" }))
        ws.on("message", (data, isBinary) => offer({ _tag: "Message", text: data.toString(), binary: isBinary }))
        ws.on("close", (code, reason) => offer({ _tag: "Close", code, reason: reason.toString() }))
        ws.on("error", (error) => offer({ _tag: "Error", message: error.message }))
        ws.on("unexpected-response", (req, res) => {
          let body = ""
          res.setEncoding("utf8")
          res.on("data", (chunk: string) => (body += chunk))
          let done = false
          const finish = () => {
            if (done) return
            done = true
            offer({ _tag: "Status", status: res.statusCode ?? 0, headers: res.headers, body })
            req.destroy()
          }
          res.once("end", finish)
          res.once("close", finish)
        })
        return ws
      }),
      (ws) => Effect.sync(() => ws.terminate())
    )
    const next = Queue.take(events)
    const message = Effect.flatMap(next, (e) =>
      e._tag === "Open"
        ? Effect.flatMap(next, (e2) =>
          e2._tag === "Message"
            ? Effect.succeed(JSON.parse(e2.text))
            : Effect.dieMessage(`expected a message, got ${JSON.stringify(e2)}`))
        : e._tag === "Message"
        ? Effect.succeed(JSON.parse(e.text))
        : Effect.dieMessage(`expected a message, got ${JSON.stringify(e)}`))
    const closed: RawClient["closed"] = Effect.flatMap(next, (e) =>
      e._tag === "Close" ? Effect.succeed({ code: e.code, reason: e.reason }) : closed)
    return {
      ws,
      next,
      message,
      closed,
      send: (data, opts) =>
        Effect.sync(() => ws.send(data, { binary: opts?.binary ?? false })),
      sendJson: (value) => Effect.sync(() => ws.send(JSON.stringify(value))),
      writeRaw: (bytes) =>
        Effect.sync(() => (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(bytes))
    }
  })

/** Waits for the upgrade: the Open event, or dies with whatever came instead. */
export const opened = (client: RawClient): Effect.Effect<void> =>
  Effect.flatMap(
    client.next,
    (e) => e._tag === "Open" ? Effect.void : Effect.dieMessage(`not opened: ${JSON.stringify(e)}`)
  )

/** Waits for a refused upgrade and returns it. */
export const refused = (client: RawClient) =>
  Effect.flatMap(
    client.next,
    (e) =>
      e._tag === "Status" ? Effect.succeed(e) : Effect.dieMessage(`expected an HTTP answer, got ${JSON.stringify(e)}`)
  )

/** One client frame, built by hand: any opcode, reserved bits, mask or announced length (RFC 6455 section 5.2). */
export const clientFrame = (options: {
  readonly opcode: number
  readonly payload?: Uint8Array | string
  readonly fin?: boolean
  /** RSV1..RSV3 as bits 0b100, 0b010, 0b001. */
  readonly rsv?: number
  /** Clients must mask; `false` sends the payload in the clear. */
  readonly mask?: boolean
  /** Announce this length instead of the payload's (an oversize header with a short body). */
  readonly announcedLength?: number
}): Buffer => {
  const payload = Buffer.from(options.payload ?? "")
  const length = options.announcedLength ?? payload.length
  const masked = options.mask ?? true
  const first = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | (options.opcode & 0x0f)
  const header = length < 126
    ? Buffer.from([first, (masked ? 0x80 : 0) | length])
    : length < 65_536
    ? Buffer.from([first, (masked ? 0x80 : 0) | 126, length >> 8, length & 0xff])
    : Buffer.concat([Buffer.from([first, (masked ? 0x80 : 0) | 127]), bigEndian64(length)])
  if (!masked) return Buffer.concat([header, payload])
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  return Buffer.concat([header, key, Buffer.from(payload.map((b, i) => b ^ key[i % 4]!))])
}

const bigEndian64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

/** What a raw socket saw from the server: its text messages, its close code (if it sent a close frame), the status line. */
export interface RawSession {
  readonly status: string
  readonly messages: ReadonlyArray<string>
  /** The close frame's code; `null` when the server closed the TCP connection without one. */
  readonly closeCode: number | null
}

/** Reads the server's (unmasked) frames out of `bytes`: text messages and the close code. */
const serverFrames = (bytes: Buffer): { messages: Array<string>; closeCode: number | null } => {
  const messages: Array<string> = []
  let closeCode: number | null = null
  let at = 0
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f
    let length = bytes[at + 1]! & 0x7f
    let start = at + 2
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2))
      start = at + 10
    }
    if (start + length > bytes.length) break
    const payload = bytes.subarray(start, start + length)
    if (opcode === 0x1) messages.push(payload.toString("utf8"))
    if (opcode === 0x8) closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
    at = start + length
  }
  return { messages, closeCode }
}

/**
 * A WebSocket session over a raw TCP socket: a real upgrade of `url` (`ws://host:port/path`), then `write` is
 * called with a function that sends any bytes; the session ends when the server closes the connection. The
 * client half-closes after `write` returns when `end` is set, so a server waiting for more bytes sees the end.
 */
export const rawSession = (
  url: string,
  write: (send: (bytes: Uint8Array) => void, received: () => ReadonlyArray<string>) => Promise<void> | void,
  options?: { readonly end?: boolean }
): Effect.Effect<RawSession> =>
  Effect.async<RawSession>((resume) => {
    const target = new URL(url)
    const chunks: Array<Buffer> = []
    let upgraded = false
    let headerEnd = -1
    const all = () => Buffer.concat(chunks)
    const frames = () => headerEnd < 0 ? { messages: [], closeCode: null } : serverFrames(all().subarray(headerEnd + 4))
    const socket = Net.connect(Number(target.port), target.hostname, () =>
      socket.write(
        `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
      ))
    let answeredClose = false
    // Answers the server's close frame, as a client does, so that the server need not wait out its close timer.
    const answerClose = () => {
      if (answeredClose || socket.destroyed || frames().closeCode === null) return
      answeredClose = true
      socket.end(clientFrame({ opcode: 0x8, payload: Buffer.from([0x03, 0xe8]) }))
    }
    socket.on("data", (chunk) => {
      chunks.push(chunk)
      if (upgraded) return answerClose()
      headerEnd = all().indexOf("\r\n\r\n")
      if (headerEnd < 0) return
      upgraded = true
      const send = (bytes: Uint8Array) => {
        if (!socket.destroyed && !socket.writableEnded) socket.write(bytes)
      }
      Promise.resolve(write(send, () => frames().messages)).then(
        () => options?.end === true && !socket.destroyed && socket.end(),
        () => socket.destroy()
      )
      answerClose()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      const bytes = all()
      const status = bytes.subarray(0, Math.max(0, bytes.indexOf("\r\n"))).toString()
      resume(Effect.succeed({ status, ...frames() }))
    })
    return Effect.sync(() => socket.destroy())
  })
