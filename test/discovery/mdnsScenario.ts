/**
 * Run inside a private network namespace by Mdns.test.ts (`unshare --net`, multicast on its loopback only): starts
 * the built Neuron (`node dist/main.js`, as `pnpm start` runs it) with NEURON_MDNS=true, browses for it with the
 * library's own browser and with `discover`, stops it with SIGTERM and waits for its goodbye. Prints one JSON line.
 */
import { Bonjour } from "bonjour-service"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { discoverOnNetwork, SERVICE_TYPE } from "../../src/discovery/Mdns.js"

const root = Path.resolve(import.meta.dirname, "../..")
const seen: Array<{ event: string; name: string; port: number; txt: unknown; at: number }> = []
const bonjour = new Bonjour(
  {},
  (error: Error) => seen.push({ event: `error ${error.message}`, name: "", port: 0, txt: null, at: Date.now() })
)
const browser = bonjour.find({ type: SERVICE_TYPE })
browser.on("up", (s) => seen.push({ event: "up", name: s.name, port: s.port, txt: s.txt, at: Date.now() }))
browser.on("down", (s) => seen.push({ event: "down", name: s.name, port: s.port, txt: s.txt, at: Date.now() }))

const waitFor = async (check: () => boolean, ms: number) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return true
}

const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "mdns-neuron-"))
let output = ""
const child = ChildProcess.spawn(process.execPath, ["--enable-source-maps", "dist/main.js"], {
  cwd: root,
  env: {
    PATH: process.env.PATH ?? "",
    NEURON_MDNS: "true",
    NEURON_DATA_DIR: dataDir,
    NEURON_PORT: "8700",
    AXON_PORT: "8600",
    NEURON_ORGANIZATION_NPI: "1234567893",
    NEURON_ORGANIZATION_NAME: "Riverside Family Practice",
    NEURON_LOG_FORMAT: "logfmt"
  },
  stdio: ["ignore", "pipe", "pipe"]
})
child.stdout.on("data", (chunk: Buffer) => void (output += chunk.toString()))
child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()))
const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))

const up = await waitFor(() => seen.some((e) => e.event === "up"), 30_000)
const discovered = up ? await Effect.runPromise(discoverOnNetwork("1500 millis")) : []
// `neuron discover`, the built command, as an operator runs it on the same network.
const command = up
  ? ChildProcess.spawnSync(process.execPath, ["dist/neuron.js", "discover", "--timeout", "2", "--json"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "" },
    encoding: "utf8",
    timeout: 30_000
  })
  : undefined
const discoverCommand = command === undefined
  ? null
  : { code: command.status, stdout: command.stdout, stderr: command.stderr }
child.kill("SIGTERM")
const down = await waitFor(() => seen.some((e) => e.event === "down"), 10_000)
const exit = await exited
browser.stop()
bonjour.destroy()
Fs.rmSync(dataDir, { recursive: true, force: true })
process.stdout.write(
  JSON.stringify({ up, down, exit, seen, discovered, discoverCommand, output: output.slice(-4000) }) + "\n"
)
process.exit(0)
