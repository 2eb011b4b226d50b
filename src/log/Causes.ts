/**
 * How an unexpected failure is named in a log line: the messages down its `cause` chain (the operator wants "no
 * such table", not only "SqlError"), bounded in length, never a stack trace.
 */
import * as Cause from "effect/Cause"

const MAX = 300

/** `Name: message <- Cause: message <- ...` for the squashed failure of `cause`. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const out: Array<string> = []
  for (let e: unknown = Cause.squash(cause), depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    out.push(e instanceof Error ? `${e.name}: ${e.message}` : typeof e === "string" ? e : "a non-error value")
    e = e instanceof Error ? e.cause : undefined
  }
  const text = out.join(" <- ")
  return text.length > MAX ? text.slice(0, MAX - 3) + "..." : text
}
