/**
 * One stop request arriving twice stops the process once, cleanly. `pnpm start` relays Ctrl-C to the process,
 * which the terminal has already sent it, and a service manager may signal both pnpm and the process group: two
 * SIGINTs (or SIGTERMs) within microseconds. The Effect runtime's handler (`NodeRuntime.runMain`) interrupts the
 * program on the first and removes itself, so without this the duplicate would kill the process with Node's
 * default action before the Neuron has closed its sockets and written its health file (tsx's wrapper used to
 * absorb it). Rules: a SIGINT / SIGTERM within a second of the first one is ignored; otherwise, when nothing
 * else listens for it (the program has not installed its handler yet, or has removed it), the process ends as
 * Node's default would (128 + the signal's number), so a deliberate second Ctrl-C still forces the exit.
 */
import * as Os from "node:os"

const DUPLICATE_WITHIN_MS = 1_000

/** Installs the guard for SIGINT and SIGTERM; call it before `NodeRuntime.runMain`. */
export const install = (): void => {
  let firstAt: number | undefined
  const onSignal = (signal: "SIGINT" | "SIGTERM") => {
    const now = Date.now()
    if (firstAt !== undefined && now - firstAt < DUPLICATE_WITHIN_MS) return
    firstAt ??= now
    if (process.listenerCount(signal) > 1) return
    process.exit(128 + Os.constants.signals[signal])
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
}
