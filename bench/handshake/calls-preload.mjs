/**
 * Preloaded (`--import`) into a server by `pnpm bench handshake --calls`: counts the calls a connection makes into
 * Node's sockets, streams, events and timers, by wrapping their public methods (what Node's own code calls through
 * the prototypes: `emit`, `write`, `end`, ...), so that two servers' per-connection work can be compared by count
 * rather than by a sampling profile's time. `Error.captureStackTrace` is left alone (better-sqlite3's `bindings`
 * finds its file from the stack). Answers `{ cmd: "calls" }` over IPC with `{ probe: "calls", counts }`.
 */
import { EventEmitter } from "node:events"
import * as Net from "node:net"
import * as Stream from "node:stream"

const counts = Object.create(null)
const count = (key) => {
  counts[key] = (counts[key] ?? 0) + 1
}
const wrap = (target, name, key) => {
  const original = target[name]
  if (typeof original !== "function") return
  target[name] = function(...args) {
    count(typeof key === "function" ? key(this, args) : key)
    return original.apply(this, args)
  }
}
const typeOf = (value) => value?.constructor?.name ?? "?"
for (const method of ["emit", "on", "once", "removeListener"]) {
  wrap(EventEmitter.prototype, method, (self, args) => `${method} ${typeOf(self)}.${String(args[0])}`)
}
for (const method of ["write", "end", "destroy", "setNoDelay", "setTimeout", "pause", "resume", "cork", "uncork"]) {
  wrap(Net.Socket.prototype, method, `Socket.${method}`)
}
wrap(Net.Socket.prototype, "_getpeername", "Socket._getpeername (getpeername)")
for (const method of ["write", "end", "destroy"]) wrap(Stream.Writable.prototype, method, `Writable.${method}`)
for (const method of ["push", "read", "pause", "resume"]) wrap(Stream.Readable.prototype, method, `Readable.${method}`)
for (const name of ["setTimeout", "clearTimeout", "setImmediate", "queueMicrotask"]) wrap(globalThis, name, name)
wrap(process, "nextTick", "process.nextTick")
wrap(Buffer, "concat", "Buffer.concat")

process.on("message", (message) => {
  if (message?.cmd === "calls") process.send({ probe: "calls", counts: { ...counts } })
})
