/**
 * The one error of the `neuron` command: a `reason` that decides the exit code (PROTOCOL.md section 7) and a
 * message printed as one line on stderr (`neuron: <message>`). The message never holds a secret.
 */
import * as Schema from "effect/Schema"

/** Why a command failed. */
export const CliErrorReason = Schema.Literal(
  /** No Neuron answers at the configured URL, or it did not answer in time. */
  "NotRunning",
  /** The Neuron refused the admin token (or, without one, the caller is not on loopback). */
  "Unauthorized",
  /** The configuration (environment, config file) is invalid. */
  "Configuration",
  /** The Neuron answered, and refused the request (a bad field, an unknown id, its storage unavailable). */
  "Refused",
  /** Something on the machine stopped the command (a file that exists, a database that cannot be read). */
  "Local",
  /** The command ran and its answer is "no" (degraded, a broken audit chain): already printed. */
  "Negative"
)
export type CliErrorReason = typeof CliErrorReason.Type

/** A failed `neuron` command. */
export class CliError extends Schema.TaggedError<CliError>()("CliError", {
  reason: CliErrorReason,
  /** One line for a person; empty when the command's output already said it. */
  message: Schema.String
}) {}

/**
 * The exit code of a failure: 2 when the command could not do its work at all (nothing answers, the token is
 * refused, the configuration is bad; `status` says "not running"), 1 when it did and the answer is "no" (degraded,
 * a broken audit chain, a request the Neuron refused, a file that is already there).
 */
export const exitCodeOf = (reason: CliErrorReason): 1 | 2 => {
  switch (reason) {
    case "NotRunning":
    case "Unauthorized":
    case "Configuration":
      return 2
    case "Refused":
    case "Local":
    case "Negative":
      return 1
  }
}
