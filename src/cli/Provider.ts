/**
 * `neuron provider add|remove|list`: the organization's providers, through the running Neuron's admin API
 * (`/v1/providers`, PROTOCOL.md section 3). The Neuron checks every field and names the bad one.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { ProviderAccepted, ProviderCreated, ProviderRemovalPending, ProviderStatusList } from "../api/NeuronApi.js"
import { AdminClient } from "./AdminClient.js"
import * as Output from "./Output.js"

const npi = Args.text({ name: "NPI" }).pipe(Args.withDescription("the provider's NPI (10 digits)"))

const add = Command.make(
  "add",
  {
    npi,
    name: Options.text("name").pipe(Options.optional, Options.withDescription("the provider's name")),
    types: Options.text("type").pipe(
      Options.repeated,
      Options.withDescription("a provider type from the registry's taxonomy, such as physician (repeatable)")
    ),
    specialty: Options.text("specialty").pipe(Options.optional, Options.withDescription("the provider's specialty")),
    endpoint: Options.text("endpoint").pipe(
      Options.optional,
      Options.withDescription("the provider's own endpoint URL, when it has one")
    ),
    json: Output.json
  },
  ({ endpoint, json, name, npi, specialty, types }) =>
    Effect.gen(function*() {
      const admin = yield* AdminClient
      const answer = yield* admin.post("/v1/providers", {
        provider_npi: npi,
        ...Option.match(name, { onNone: () => ({}), onSome: (provider_name) => ({ provider_name }) }),
        ...(types.length === 0 ? {} : { provider_types: types }),
        ...Option.match(specialty, { onNone: () => ({}), onSome: (specialty) => ({ specialty }) }),
        ...Option.match(endpoint, {
          onNone: () => ({}),
          onSome: (provider_endpoint_url) => ({ provider_endpoint_url })
        })
      }, [201, 202])
      const added = yield* admin.decode(Schema.Union(ProviderCreated, ProviderAccepted), answer)
      if (json) return yield* Output.printJson(answer.body)
      const p = added.provider
      yield* Console.log(
        added.outcome === "registered"
          ? `provider ${p.provider_npi} registered with the registry (provider id ${p.provider_id ?? "-"})`
          : p.last_error !== null
          ? `provider ${p.provider_npi} stored, but the registry refused it: ${p.last_error}`
          : `provider ${p.provider_npi} stored pending: it is registered as soon as the registry answers`
      )
    })
).pipe(Command.withDescription("Add a provider to this Neuron and register it with the registry."))

const remove = Command.make("remove", { npi, json: Output.json }, ({ json, npi }) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient
    const answer = yield* admin.del(`/v1/providers/${encodeURIComponent(npi)}`, [202, 204])
    if (answer.status === 202) yield* admin.decode(ProviderRemovalPending, answer)
    const result = { provider_npi: npi, status: answer.status === 204 ? "removed" : "removing" }
    if (json) return yield* Output.printJson(result)
    yield* Console.log(
      answer.status === 204
        ? `provider ${npi} removed`
        : `provider ${npi} no longer served; it is removed from the registry as soon as the registry answers`
    )
  })).pipe(Command.withDescription("Remove a provider from this Neuron and from the registry."))

const list = Command.make("list", { json: Output.json }, ({ json }) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient
    const answer = yield* admin.get("/v1/providers")
    const { providers } = yield* admin.decode(ProviderStatusList, answer)
    if (json) return yield* Output.printJson(answer.body)
    yield* Output.printTable(providers, [
      ["npi", (p) => p.provider_npi],
      ["name", (p) => p.provider_name],
      ["types", (p) => p.provider_types.join(",")],
      ["status", (p) => p.status],
      ["registry error", (p) => p.last_error]
    ], "no providers")
  })).pipe(Command.withDescription("List this Neuron's providers and their state towards the registry."))

/** `neuron provider add|remove|list`. */
export const provider = Command.make("provider").pipe(
  Command.withDescription("Manage the organization's providers."),
  Command.withSubcommands([add, remove, list])
)
