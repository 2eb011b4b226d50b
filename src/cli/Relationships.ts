/**
 * `neuron relationships list`: the consent relationships this Neuron holds (`GET /v1/relationships`,
 * PROTOCOL.md section 3); `neuron relationships terminate ID --reason TEXT`: the organization ends one
 * (`POST /v1/relationships/{id}/terminate`, section 8). Subcommands that change a relationship join `subcommands`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { RelationshipList, RelationshipView } from "../api/NeuronApi.js"
import { AdminClient } from "./AdminClient.js"
import * as Output from "./Output.js"

const list = Command.make(
  "list",
  {
    provider: Options.text("provider").pipe(Options.optional, Options.withDescription("only this provider's (NPI)")),
    patient: Options.text("patient").pipe(Options.optional, Options.withDescription("only this patient agent's")),
    json: Output.json
  },
  ({ json, patient, provider }) =>
    Effect.gen(function*() {
      const admin = yield* AdminClient
      const query = new URLSearchParams()
      if (Option.isSome(provider)) query.set("provider_npi", provider.value)
      if (Option.isSome(patient)) query.set("patient_agent_id", patient.value)
      const answer = yield* admin.get(`/v1/relationships${query.size === 0 ? "" : `?${query}`}`)
      const { relationships } = yield* admin.decode(RelationshipList, answer)
      if (json) return yield* Output.printJson(answer.body)
      yield* Output.printTable(relationships, [
        ["relationship", (r) => r.relationship_id],
        ["patient agent", (r) => r.patient_agent_id],
        ["provider", (r) => r.provider_npi],
        ["status", (r) => r.status],
        ["created", (r) => r.created_at],
        ["actions", (r) => r.consented_actions.join(",")]
      ], "no relationships")
    })
).pipe(Command.withDescription("List consent relationships, oldest first."))

const terminate = Command.make(
  "terminate",
  {
    id: Args.text({ name: "ID" }).pipe(Args.withDescription("the relationship id")),
    reason: Options.text("reason").pipe(
      Options.withDescription("why the organization ends it (1 to 500 characters; kept with the relationship)")
    ),
    json: Output.json
  },
  ({ id, json, reason }) =>
    Effect.gen(function*() {
      const admin = yield* AdminClient
      const answer = yield* admin.post(`/v1/relationships/${encodeURIComponent(id)}/terminate`, { reason }, [200])
      const ended = yield* admin.decode(RelationshipView, answer)
      if (json) return yield* Output.printJson(answer.body)
      yield* Console.log(`relationship ${ended.relationship_id} terminated at ${ended.ended_at}: ${ended.end_reason}`)
    })
).pipe(Command.withDescription("End a relationship for the organization: permanent and audited."))

/** The subcommands of `neuron relationships`; one more is one more entry here. */
const subcommands = [list, terminate] as const

/** `neuron relationships ...`. */
export const relationships = Command.make("relationships").pipe(
  Command.withDescription("Consent relationships between patients' CareAgents and this organization's providers."),
  Command.withSubcommands(subcommands)
)
