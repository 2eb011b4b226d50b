/**
 * `pnpm demo` as a person runs it: a child process that prints each step and ends by itself, the patient's
 * first handshake making a relationship and the second finding it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")

const runDemo = Effect.async<{ readonly code: number | null; readonly output: string }>((resume) => {
  const child = spawn(Path.join(root, "node_modules/.bin/tsx"), ["demo/main.ts"], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" }
  })
  let output = ""
  child.stdout.on("data", (chunk) => (output += chunk))
  child.stderr.on("data", (chunk) => (output += chunk))
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
  child.on("exit", (code) => {
    clearTimeout(timer)
    resume(Effect.succeed({ code, output }))
  })
  return Effect.sync(() => child.kill("SIGKILL"))
})

describe("pnpm demo", () => {
  it.live(
    "prints each step: registry, Neuron, registration, provider, a new relationship, then the existing one",
    () =>
      Effect.gen(function*() {
        const { code, output } = yield* runDemo
        assert.strictEqual(code, 0, output)
        const steps = output.split("\n").filter((line) => /^\d\. /.test(line))
        assert.strictEqual(steps.length, 8, output)
        const results = output.split("\n").filter((line) => line.startsWith("   result: ")).map((line) =>
          JSON.parse(line.slice("   result: ".length))
        )
        assert.deepStrictEqual(results.map((r) => r.status), ["new", "existing"])
        assert.strictEqual(results[0].relationship_id, results[1].relationship_id)
        assert.strictEqual(results[0].provider_npi, "1558598797")
      }),
    90_000
  )
})
