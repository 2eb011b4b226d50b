/**
 * What the `neuron` command's tests share: a real registry and a real Neuron (in this process, with an admin
 * token) and the environment that points the built command at it, as an operator's shell would.
 */
import { assert } from "@effect/vitest"
import * as Effect from "effect/Effect"
import {
  neuronWithToken as startWithToken,
  type NeuronWithTokenOptions,
  type RunningNeuron
} from "../support/neuron.js"
import type { CommandResult } from "../support/process.js"

/** The admin token of the tests' Neuron. */
export const ADMIN_TOKEN = "cli-admin-SECRET-0123456789"

/**
 * A registry and a Neuron with the tests' admin token (`neuronWithToken` of test/support/neuron.ts; not waiting
 * for it to be healthy unless asked), and the command's environment for that Neuron.
 */
export const neuronWithToken = (options?: Omit<NeuronWithTokenOptions, "token">) =>
  Effect.map(
    startWithToken({ healthy: false, ...options, token: ADMIN_TOKEN }),
    (started) => ({ ...started, env: envFor(started.neuron) })
  )

/** The environment an operator's shell would have for `neuron`: where it listens, its data folder, its token. */
export const envFor = (neuron: RunningNeuron, token: string = ADMIN_TOKEN): Record<string, string> => ({
  NEURON_HOST: "127.0.0.1",
  NEURON_PORT: new URL(neuron.url).port,
  NEURON_DATA_DIR: neuron.dataDir,
  NEURON_ADMIN_TOKEN: token
})

/** The JSON a command printed on stdout (with `--json`), after checking that it succeeded. */
export const jsonOf = (result: CommandResult): any => {
  assert.strictEqual(result.code, 0, result.stderr)
  return JSON.parse(result.stdout)
}

/** Asserts that a command failed with `code` and one line on stderr matching `pattern`, and nothing on stdout. */
export const assertOneLineError = (result: CommandResult, code: number, pattern: RegExp): string => {
  assert.strictEqual(result.code, code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`)
  const lines = result.stderr.split("\n").filter((l) => l.trim() !== "")
  assert.strictEqual(lines.length, 1, result.stderr)
  assert.match(lines[0]!, /^neuron: /)
  assert.match(lines[0]!, pattern)
  assert.strictEqual(result.stdout, "")
  return lines[0]!
}
