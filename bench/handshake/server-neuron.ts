/**
 * The Neuron side of `pnpm bench handshake --hold`, a child process: `startNeuron` (neuron.ts, the real
 * HandshakeServer with its real dependencies) in a process of its own, bundled by scripts/build.mjs and run by plain
 * `node`, as `pnpm start` runs the Neuron (no tsx loader thread or transpiled modules in the memory measured).
 * Arguments: the SQLite file, the auth timeout (ms), maxConcurrentHandshakes, and "1" to keep the HTTP span of
 * /ws/handshake. It speaks the IPC of server-baseline.ts: `{ ready, port }` first, then `memory` (after a full GC
 * when `gc` is true), `stop`; and `sessions` (the handshakes in progress, and how many await `handshake.auth`).
 */
import * as Effect from "effect/Effect"
import { memory } from "./common.js"
import { startNeuron } from "./neuron.js"

/** The answer to `sessions`. */
export interface Sessions {
  readonly total: number
  readonly awaitingAuth: number
}

const neuron = await startNeuron({
  filename: process.argv[2]!,
  authTimeoutMs: Number(process.argv[3] ?? 10_000),
  maxConcurrentHandshakes: Number(process.argv[4] ?? 1_000),
  withoutHttpSpans: process.argv[5] !== "1"
})
process.send!({ ready: true, port: neuron.port })

const gc = (globalThis as { gc?: () => void }).gc
process.on("message", async (message: any) => {
  if (message.cmd === "memory") {
    if (message.gc === true) gc?.()
    process.send!(memory())
  }
  if (message.cmd === "sessions") {
    const sessions = await Effect.runPromise(neuron.server.activeSessions)
    process.send!(
      {
        total: sessions.length,
        awaitingAuth: sessions.filter((s) => s.state === "awaiting_auth").length
      } satisfies Sessions
    )
  }
  if (message.cmd === "stop") {
    await neuron.close()
    process.exit(0)
  }
})
