/**
 * `neuron status`: is the Neuron up, and how is it doing. `/health` decides the exit code (0 healthy, 1 degraded,
 * 2 not running or not answering: PROTOCOL.md section 7); `/v1/status` adds the details.
 */
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { NeuronHealthView, NeuronStatusView } from "../api/NeuronApi.js"
import { AdminClient } from "./AdminClient.js"
import { CliError } from "./CliError.js"
import * as Output from "./Output.js"

const describe = (url: string, health: NeuronHealthView, status: NeuronStatusView) => {
  const hb = status.heartbeat
  const lines: Array<[string, string]> = [
    ["neuron", `${url}: ${health.status}`],
    ["registration", `${status.registration}${status.registration_id === null ? "" : ` (${status.registration_id})`}`],
    ["organization", status.organization_npi ?? "-"],
    ["registry", status.axon_url ?? "-"],
    [
      "heartbeat",
      `${hb.status}, last ${hb.last_heartbeat_at ?? "never"}` +
      (hb.consecutive_failures > 0 ? `, ${hb.consecutive_failures} failures in a row` : "") +
      (hb.next_attempt_at === null ? "" : `, next attempt ${hb.next_attempt_at}`)
    ],
    [
      "providers",
      `${status.providers.registered} registered, ${status.providers.pending} pending, ${status.providers.removing} removing`
    ],
    ["handshakes", `${status.active_handshakes.length} in progress`]
  ]
  return lines.map(([k, v]) => `${k.padEnd(13)}${v}`).join("\n")
}

/** `neuron status [--json]`. */
export const status = Command.make("status", { json: Output.json }, ({ json }) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient
    const health = yield* Effect.flatMap(admin.get("/health"), (a) => admin.decode(NeuronHealthView, a))
    const details = yield* Effect.flatMap(admin.get("/v1/status"), (a) => admin.decode(NeuronStatusView, a))
    if (json) {
      yield* Output.printJson({ url: admin.url, health, status: details })
    } else {
      yield* Console.log(describe(admin.url, health, details))
    }
    if (health.status !== "healthy") return yield* new CliError({ reason: "Negative", message: "" })
  })).pipe(
    Command.withDescription(
      "Show the running Neuron's health and registration. Exit code 0 healthy, 1 degraded, 2 not running."
    )
  )
