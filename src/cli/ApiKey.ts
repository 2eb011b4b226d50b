/**
 * `neuron api-key create|list|revoke`: API keys for scripts and integrations (PROTOCOL.md section 7), through the
 * running Neuron's admin API (`/v1/api-keys`). A key is shown once, when it is created; the Neuron keeps only its
 * hash, so a lost key is revoked and replaced, never recovered.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { ApiKeyCreated, ApiKeyList } from "../api/NeuronApi.js"
import { AdminClient } from "./AdminClient.js"
import * as Output from "./Output.js"

const create = Command.make(
  "create",
  {
    name: Options.text("name").pipe(Options.withDescription("what the key is for (shown in the list)")),
    scope: Options.choice("scope", ["read", "admin"]).pipe(
      Options.withDescription("read: the admin API's GET routes; admin: every admin route")
    ),
    json: Output.json
  },
  ({ json, name, scope }) =>
    Effect.gen(function*() {
      const admin = yield* AdminClient
      const answer = yield* admin.post("/v1/api-keys", { name, scope }, [201])
      const created = yield* admin.decode(ApiKeyCreated, answer)
      if (json) return yield* Output.printJson(answer.body)
      // The key alone on stdout, so that `neuron api-key create ... > file` keeps only the key; the rest on stderr.
      yield* Console.error(
        `API key ${created.id} (${created.name}, scope ${created.scope}) created. It is shown this once: store it now.`
      )
      yield* Console.log(created.key)
    })
).pipe(Command.withDescription("Create an API key and print it (once: the Neuron stores only its hash)."))

const list = Command.make("list", { json: Output.json }, ({ json }) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient
    const answer = yield* admin.get("/v1/api-keys")
    const { api_keys } = yield* admin.decode(ApiKeyList, answer)
    if (json) return yield* Output.printJson(answer.body)
    yield* Output.printTable(api_keys, [
      ["id", (k) => k.id],
      ["name", (k) => k.name],
      ["scope", (k) => k.scope],
      ["created", (k) => k.created_at],
      ["last used", (k) => k.last_used_at],
      ["revoked", (k) => k.revoked_at]
    ], "no API keys")
  })).pipe(Command.withDescription("List API keys (never the keys themselves)."))

const revoke = Command.make(
  "revoke",
  { id: Args.text({ name: "ID" }).pipe(Args.withDescription("the key's id, as `api-key list` shows it")) },
  ({ id }) =>
    Effect.gen(function*() {
      const admin = yield* AdminClient
      yield* admin.del(`/v1/api-keys/${encodeURIComponent(id)}`, [204])
      yield* Console.log(`API key ${id} revoked: it is refused from the next request on`)
    })
).pipe(Command.withDescription("Revoke an API key: refused from the next request on."))

/** `neuron api-key create|list|revoke`. */
export const apiKey = Command.make("api-key").pipe(
  Command.withDescription("API keys for scripts and integrations (X-API-Key or Authorization: Bearer)."),
  Command.withSubcommands([create, list, revoke])
)
