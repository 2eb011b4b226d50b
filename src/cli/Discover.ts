/**
 * `neuron discover [--timeout SECONDS]`: the Neurons heard on the local network within the time-out, from their
 * mDNS advertisements (`_careagent-neuron._tcp`, TXT npi, ver, ep; PROTOCOL.md section 9). It needs no running
 * Neuron and no configuration: it browses with a multicast socket of its own.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { discoverOnNetwork } from "../discovery/Mdns.js"
import * as Output from "./Output.js"

/** `neuron discover`. */
export const discover = Command.make(
  "discover",
  {
    timeout: Options.integer("timeout").pipe(
      Options.withDefault(3),
      Options.withDescription("how long to listen, in seconds (default 3)")
    ),
    json: Output.json
  },
  ({ json, timeout }) =>
    Effect.gen(function*() {
      const neurons = yield* discoverOnNetwork(Duration.seconds(Math.max(1, timeout)))
      if (json) return yield* Output.printJson({ neurons })
      yield* Output.printTable(neurons, [
        ["name", (n) => n.name],
        ["npi", (n) => n.npi],
        ["handshake", (n) => n.ep],
        ["version", (n) => n.ver],
        ["address", (n) => `${n.addresses[0] ?? n.host}:${n.port}`]
      ], "no Neuron heard")
      yield* Console.error(`listened ${Math.max(1, timeout)} s for _careagent-neuron._tcp`)
    })
).pipe(Command.withDescription("List the Neurons advertising on the local network (mDNS, NEURON_MDNS=true)."))
