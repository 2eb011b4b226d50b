/**
 * The `neuron` command (PROTOCOL.md section 7), one file per subcommand group in this folder. A new group is one
 * more file and one more entry in `subcommands`.
 */
import * as Command from "@effect/cli/Command"
import { AdminClient } from "./AdminClient.js"
import { apiKey } from "./ApiKey.js"
import { discover } from "./Discover.js"
import { init } from "./Init.js"
import { provider } from "./Provider.js"
import { relationships } from "./Relationships.js"
import { axon, start } from "./Start.js"
import { status } from "./Status.js"
import { verifyAudit } from "./VerifyAudit.js"

// The commands that talk to a running Neuron get its admin client, built (the configuration read) only when one
// of them runs: `init` and `start` must work whatever the configuration holds.
const admin = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>) =>
  Command.provide(command, AdminClient.layerFetch)

const subcommands = [
  start,
  init,
  admin(status),
  admin(provider),
  admin(relationships),
  verifyAudit,
  admin(apiKey),
  discover,
  axon
] as const

/** `neuron ...`. */
export const neuron = Command.make("neuron").pipe(
  Command.withDescription("Run and operate a CareAgent Neuron."),
  Command.withSubcommands(subcommands)
)
