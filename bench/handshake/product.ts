/**
 * The Neuron as `pnpm start` runs it, for `pnpm bench handshake`: `node --enable-source-maps dist/main.js` (the
 * bundle scripts/build.mjs makes) with the embedded registry (no AXON_REGISTRY_URL), configured by environment
 * only, its log output (stdout and stderr) written to a file. The only addition is probe.mjs, preloaded with
 * `--import`, which answers the bench over an IPC channel (CPU, memory, event-loop delay, GC, profiles). Once it
 * is healthy, the bench's provider is added through the admin API (loopback), as an operator would.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "../../scripts/build.mjs"
import { PROVIDER } from "./common.js"
import { track } from "./harness.js"

const here = Path.dirname(fileURLToPath(import.meta.url))

/** A free TCP port on 127.0.0.1 (the Neuron needs its ports up front: NEURON_PORT, AXON_PORT). */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** A running product. */
export interface Product {
  readonly child: ChildProcess
  readonly port: number
  readonly log: string
}

/** Sends a probe command and resolves with its answer. */
export const probe = <A>(child: ChildProcess, message: object): Promise<A> =>
  new Promise((resolve) => {
    const cmd = (message as { cmd: string }).cmd
    const on = (answer: any) => {
      if (answer?.probe !== cmd) return
      child.off("message", on)
      resolve(answer)
    }
    child.on("message", on)
    child.send(message)
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Builds dist/ (as `pnpm start` does first) and starts the product on fresh ports with its data in `dataDir`. */
export const startProduct = async (
  dataDir: string,
  env: Record<string, string> = {},
  /** Another checkout of the project, already built (`BENCH_COMPARE`): its dist/main.js is run instead. */
  checkout?: string,
  /** Node flags added before the script (an experiment's, e.g. `--max-semi-space-size=32`). */
  nodeFlags: ReadonlyArray<string> = []
): Promise<Product> => {
  if (checkout === undefined) await build()
  const port = await freePort()
  const axonPort = await freePort()
  Fs.mkdirSync(dataDir, { recursive: true })
  const log = Path.join(dataDir, "neuron.log")
  const out = Fs.openSync(log, "a")
  const root = checkout ?? Path.resolve(here, "../..")
  const child = spawn(
    process.execPath,
    [...nodeFlags, "--enable-source-maps", "--expose-gc", "--import", Path.join(here, "probe.mjs"), "dist/main.js"],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        NEURON_PORT: String(port),
        NEURON_DATA_DIR: Path.join(dataDir, "neuron"),
        AXON_PORT: String(axonPort),
        AXON_DATA_DIR: Path.join(dataDir, "axon"),
        ...env
      },
      stdio: ["ignore", out, out, "ipc"]
    }
  )
  Fs.closeSync(out)
  track(child)
  const url = `http://127.0.0.1:${port}`
  for (let i = 0;; i++) {
    if (child.exitCode !== null) throw new Error(`the Neuron exited with ${child.exitCode}: see ${log}`)
    const health = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) }).then(
      (r) => r.json() as Promise<{ status?: string }>,
      () => undefined
    )
    if (health?.status === "healthy") break
    if (i > 300) throw new Error(`the Neuron did not become healthy: see ${log}`)
    await sleep(100)
  }
  const added = await fetch(`${url}/v1/providers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ provider_npi: PROVIDER, provider_name: "Bench Provider" })
  })
  if (added.status >= 300) throw new Error(`adding the provider: ${added.status} ${await added.text()}`)
  return { child, port, log }
}

/** Stops the product as a service manager does (SIGTERM) and waits for it to exit. */
export const stopProduct = (product: Product) =>
  new Promise<void>((resolve) => {
    if (product.child.exitCode !== null) return resolve()
    product.child.once("exit", () => resolve())
    product.child.kill("SIGTERM")
  })
