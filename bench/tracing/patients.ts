/**
 * The patients' side of `pnpm bench tracing`, a process of its own (forked by index.ts with tsx), so that the
 * bench process's CPU time is the Neuron's alone. Keys are made once, from 32 random bytes (TRAPS.md: never
 * `generateKeyPairSync` for many keys); the client runs with its tracer disabled.
 *
 * Commands (IPC): `{ cmd: "run", url, provider, count, concurrency }` answers `{ done: count, failed }` once
 * every handshake has ended; `{ cmd: "stop" }` exits.
 */
import * as Effect from "effect/Effect"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import type { Npi } from "../../src/domain/Npi.js"

interface Run {
  readonly cmd: "run"
  readonly url: string
  readonly provider: Npi
  readonly count: number
  readonly concurrency: number
}

const keys = Effect.runSync(Effect.forEach(Array.from({ length: 64 }), () => makePatientKey))
let serial = 0

const run = (command: Run) =>
  Effect.forEach(Array.from({ length: command.count }), () => {
    const id = serial++
    return handshake({
      url: handshakeUrl(command.url),
      key: keys[id % keys.length]!,
      patient_agent_id: `bench-patient-${process.pid}-${id}`,
      provider_npi: command.provider,
      consented_actions: ["read:records"],
      patient_endpoint: "https://patient.example/agent"
    }).pipe(Effect.as(0), Effect.orElseSucceed(() => 1))
  }, { concurrency: command.concurrency }).pipe(
    Effect.map((outcomes) => ({ done: command.count, failed: outcomes.reduce((a, b) => a + b, 0) })),
    Effect.withTracerEnabled(false)
  )

process.on("message", (message: Run | { readonly cmd: "stop" }) => {
  if (message.cmd === "stop") process.exit(0)
  void Effect.runPromise(run(message)).then((answer) => process.send!(answer))
})
process.send!({ ready: true })
