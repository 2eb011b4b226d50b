/**
 * What both modes of `pnpm bench handshake` share: the data folder (on /dev/shm when there is one), the child
 * processes (forked with tsx, or bundles under plain node; stopped at the end), asking them over IPC, formatting,
 * and a time limit.
 */
import { type ChildProcess, fork } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

/** The whole run stops by itself after this long, whatever happens. */
const DEADLINE_MS = 6 * 60_000

const here = Path.dirname(fileURLToPath(import.meta.url))
const children: Array<ChildProcess> = []

/**
 * Where the SQLite files live: BENCH_DATA when set (a folder on the disk a clinic's Neuron would use: every commit
 * is then a real fsync), else /dev/shm when there is one (the work disk is noisy: TRAPS.md).
 */
export const base = process.env.BENCH_DATA ?? (Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir())
/** This run's folder, removed at the end. */
export const dataDir = Fs.mkdtempSync(Path.join(base, "handshake-bench-"))

V8.setFlagsFromString("--expose-gc")
/** A full garbage collection of this process. */
export const gc: () => void = Vm.runInNewContext("gc")

/**
 * Forks `file` (a path relative to this folder, or absolute) with tsx, or with plain `node` when `bundled` (a
 * JavaScript bundle made by scripts/build.mjs); resolves with its first message (`port` for a server).
 */
export const start = (
  file: string,
  args: Array<string>,
  options?: {
    readonly bundled?: boolean
    /** Node flags added (`--calls`: `--import` of its counting preload). */
    readonly nodeFlags?: ReadonlyArray<string>
  }
): Promise<{ child: ChildProcess; port?: number }> =>
  new Promise((resolve, reject) => {
    const execArgv = [
      ...(options?.bundled === true ? ["--enable-source-maps", "--expose-gc"] : ["--import", "tsx", "--expose-gc"]),
      ...(options?.nodeFlags ?? [])
    ]
    const child = fork(Path.resolve(here, file), args, { execArgv, stdio: "inherit" })
    children.push(child)
    child.once("message", (message: any) => resolve({ child, port: message.port }))
    child.once("exit", (code) => reject(new Error(`${file} exited with ${code}`)))
  })

/** Stops `child` with the others at the end of the run (or on the time limit). */
export const track = (child: ChildProcess) => void children.push(child)

/** Sends `message` and resolves with the child's next message. */
export const ask = <A>(child: ChildProcess, message: object): Promise<A> =>
  new Promise((resolve) => {
    child.once("message", (answer: any) => resolve(answer))
    child.send(message)
  })

/** Asks a child to stop and waits until it has exited. */
export const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.removeAllListeners("exit")
    child.once("exit", () => resolve())
    child.send({ cmd: "stop" })
  })

export const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
export const mib = (bytes: number) => `${fmt(bytes / 1024 / 1024)} MiB`
export const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
export const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}
/** One row of a Markdown table. */
export const line = (cells: ReadonlyArray<string>) => console.log(`| ${cells.join(" | ")} |`)

/** The machine note printed first. */
export const machine = () =>
  `${Os.cpus().length} cores (${Os.cpus()[0]?.model.trim()}), shared; load average ${
    Os.loadavg().map((l) => l.toFixed(2)).join(" ")
  } at the start; Node ${process.version}; data on ${base}`

/** Stops every child at once and removes the data folder (on the time limit, or Ctrl-C / SIGTERM). */
const abort = (why: string) => {
  console.error(why)
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
  Fs.rmSync(dataDir, { recursive: true, force: true })
  process.exit(1)
}

/** Runs `main`, then (or on the time limit, or on a signal) stops every child and removes the data folder. */
export const run = async (main: () => Promise<void>) => {
  const deadline = setTimeout(
    () => abort(`the benchmark did not finish within ${DEADLINE_MS / 60_000} minutes: stopping`),
    DEADLINE_MS
  )
  deadline.unref()
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => abort(`${signal}: stopping`))
  try {
    await main()
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill()
    Fs.rmSync(dataDir, { recursive: true, force: true })
  }
  process.exit(process.exitCode ?? 0)
}
