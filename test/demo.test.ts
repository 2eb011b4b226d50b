/**
 * `pnpm demo` as a person runs it: a child process that prints each step and ends by itself, the patient's
 * first handshake making a relationship and the second finding it, a revocation over HTTP, a new relationship and
 * its revocation over the handshake socket.
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
    "prints each step: registry, Neuron, registration, provider, a new relationship, the existing one, a revocation after the handshake, then a new relationship, revoked by consent.revoke as the first message of a handshake socket",
    () =>
      Effect.gen(function*() {
        const { code, output } = yield* runDemo
        assert.strictEqual(code, 0, output)
        const steps = output.split("\n").filter((line) => /^\d+\. /.test(line))
        assert.strictEqual(steps.length, 11, output)
        const results = output.split("\n").filter((line) => line.startsWith("   result: ")).map((line) =>
          JSON.parse(line.slice("   result: ".length))
        )
        assert.deepStrictEqual(results.map((r) => r.status), ["new", "existing", "new"])
        assert.strictEqual(results[0].relationship_id, results[1].relationship_id)
        assert.notStrictEqual(results[2].relationship_id, results[0].relationship_id)
        // The revocation after the handshake, and the relationship's status that follows it.
        const revoked = JSON.parse(output.split("\n").find((line) => line.startsWith("   revoked: "))!.slice(12))
        assert.deepStrictEqual([revoked.relationship_id, revoked.status], [results[0].relationship_id, "revoked"])
        const now = JSON.parse(
          output.split("\n").find((line) => line.startsWith("   the relationship now: "))!.slice(25)
        )
        assert.deepStrictEqual([now.status, now.ended_at, now.end_reason], [
          "revoked",
          revoked.ended_at,
          "revoked by the patient"
        ])
        assert.strictEqual(results[0].provider_npi, "1558598797")
        // The new relationship, revoked over the handshake socket.
        const overSocket = JSON.parse(
          output.split("\n").find((line) => line.startsWith("   revoked over the socket: "))!.slice(28)
        )
        assert.strictEqual(overSocket.relationship_id, results[2].relationship_id)
        assert.isTrue(Number.isFinite(Date.parse(overSocket.ended_at)))
        assert.include(steps[9], "consent.revoke as the first message")
      }),
    90_000
  )
})
