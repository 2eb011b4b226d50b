/**
 * The service files, checked against the package they run (docker cannot run here, systemd cannot start units):
 * the systemd unit's ExecStart, user and paths, its hardening, and `systemd-analyze verify`; the Dockerfile's stages,
 * user, entry point and HEALTHCHECK, whose command is run against a real Neuron.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { entryPoints } from "../../scripts/build.mjs"
import { freePort, startNeuron } from "../support/neuron.js"
import { root } from "../support/process.js"
import { startRegistry } from "../support/registry.js"

const packageJson = JSON.parse(Fs.readFileSync(`${root}package.json`, "utf8"))
const bin: string = packageJson.bin.neuron

/** The unit's `[Service]` settings: key -> every value given (a key may repeat). */
const unit = (() => {
  const sections = new Map<string, Map<string, Array<string>>>()
  let current = ""
  for (const raw of Fs.readFileSync(`${root}deploy/neuron.service`, "utf8").split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const section = /^\[(.+)\]$/.exec(line)
    if (section !== null) {
      current = section[1]!
      sections.set(current, new Map())
      continue
    }
    const [key, ...value] = line.split("=")
    const entries = sections.get(current)!
    entries.set(key!, [...(entries.get(key!) ?? []), value.join("=")])
  }
  return sections
})()
const service = (key: string) => unit.get("Service")!.get(key) ?? []

const dockerfile = Fs.readFileSync(`${root}Dockerfile`, "utf8")
/** The Dockerfile's instructions (continuation lines joined), per stage. */
const stages = (() => {
  const instructions = dockerfile.replace(/\\\n/g, " ").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
  const out: Array<Array<string>> = []
  for (const instruction of instructions) {
    if (instruction.startsWith("FROM ")) out.push([])
    out.at(-1)?.push(instruction)
  }
  return out
})()

describe("deploy/neuron.service (systemd)", () => {
  it("ExecStart runs the package's bin (dist/neuron.js, built by pnpm build) with start, from the release folder", () => {
    assert.strictEqual(bin, "dist/neuron.js")
    assert.strictEqual(entryPoints.neuron, "src/cli/bin.ts")
    const [workdir] = service("WorkingDirectory")
    assert.deepStrictEqual(service("ExecStart"), [`/usr/bin/node --enable-source-maps ${workdir}/${bin} start`])
  })

  it("its own user, the data folder as the only writable path (and NEURON_DATA_DIR), Restart=on-failure, hardening", () => {
    assert.deepStrictEqual(service("User"), ["neuron"])
    assert.deepStrictEqual(service("Group"), ["neuron"])
    assert.deepStrictEqual(service("Environment").filter((e) => e.startsWith("NEURON_DATA_DIR=")), [
      "NEURON_DATA_DIR=/var/lib/neuron"
    ])
    assert.deepStrictEqual(service("ReadWritePaths"), ["/var/lib/neuron"])
    assert.deepStrictEqual(service("StateDirectory"), ["neuron"])
    assert.deepStrictEqual(service("ProtectSystem"), ["strict"])
    assert.deepStrictEqual(service("Restart"), ["on-failure"])
    assert.deepStrictEqual(service("KillSignal"), ["SIGTERM"])
    for (const key of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"]) {
      assert.deepStrictEqual(service(key), ["yes"], key)
    }
    assert.deepStrictEqual(service("CapabilityBoundingSet"), [""])
    assert.deepStrictEqual(unit.get("Install")!.get("WantedBy"), ["multi-user.target"])
  })

  it("systemd-analyze verify accepts the unit", () => {
    const result = ChildProcess.spawnSync("systemd-analyze", ["verify", `${root}deploy/neuron.service`], {
      encoding: "utf8"
    })
    assert.strictEqual(result.error, undefined, "systemd-analyze is installed (Debian's systemd package)")
    assert.strictEqual(result.status, 0, result.stderr)
    assert.strictEqual(result.stderr.trim(), "")
  })
})

describe("Dockerfile (multi-stage, non-root, HEALTHCHECK on /health)", () => {
  it("two stages: the first builds dist/ with the pinned pnpm and prunes to production, the second copies dist/ and node_modules from it", () => {
    assert.strictEqual(stages.length, 2)
    const [build, runtime] = stages as [Array<string>, Array<string>]
    assert.match(build[0]!, /^FROM node:20-[a-z-]+ AS build$/)
    assert.match(runtime[0]!, /^FROM node:20-[a-z-]+$/)
    assert.match(packageJson.engines.node, /^>=20$/)
    assert.isTrue(build.some((i) => i.includes(`pnpm@${packageJson.packageManager.replace(/^pnpm@/, "")}`)))
    assert.isTrue(build.some((i) => i === "RUN pnpm install --frozen-lockfile"))
    assert.isTrue(build.some((i) => i === "RUN pnpm build && pnpm prune --prod"))
    for (const path of ["dist", "node_modules", "package.json"]) {
      assert.isTrue(runtime.some((i) => i.startsWith(`COPY --from=build /app/${path} `)), path)
    }
  })

  it("runs as the unprivileged user neuron, with the data folder as a volume, the bin as entry point and start as command", () => {
    const runtime = stages[1]!
    const users = runtime.filter((i) => i.startsWith("USER "))
    assert.deepStrictEqual(users, ["USER neuron"])
    assert.isTrue(runtime.some((i) => /useradd --system .*neuron$/.test(i)))
    assert.include(runtime, `VOLUME ["/var/lib/neuron"]`)
    assert.isTrue(runtime.some((i) => i.startsWith("ENV ") && i.includes("NEURON_DATA_DIR=/var/lib/neuron")))
    assert.include(runtime, `ENTRYPOINT ["node", "--enable-source-maps", "/opt/neuron/${bin}"]`)
    assert.include(runtime, `CMD ["start"]`)
    // Everything the entry point needs is copied: the build's entries are bundles in dist/.
    assert.includeMembers(Object.keys(entryPoints), ["main", "axon", "neuron"])
  })

  it.scopedLive(
    "the HEALTHCHECK command exits 0 against a running Neuron's /health and 1 when nothing answers",
    () =>
      Effect.gen(function*() {
        const healthcheck = stages[1]!.find((i) => i.startsWith("HEALTHCHECK "))
        assert.isDefined(healthcheck)
        assert.match(healthcheck!, /--interval=\d+s --timeout=\d+s/)
        const args = JSON.parse(/CMD (\[.*\])$/.exec(healthcheck!)![1]!) as Array<string>
        assert.strictEqual(args[0], "node")
        assert.include(args.join(" "), "/health")
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        const run = (port: string) =>
          Effect.async<number | null>((resume) => {
            ChildProcess.execFile(
              process.execPath,
              args.slice(1),
              { env: { NEURON_PORT: port } },
              (error) => resume(Effect.succeed(error === null ? 0 : typeof error.code === "number" ? error.code : null))
            )
          })
        assert.strictEqual(yield* run(new URL(neuron.url).port), 0)
        assert.strictEqual(yield* run(String(yield* freePort)), 1)
      }),
    60_000
  )
})
