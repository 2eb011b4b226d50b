/**
 * What the `neuron` command prints: data as JSON (`--json`, one document on stdout, for scripts) or as an aligned
 * table for a person, and the shared `--json` option.
 */
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import type * as Effect from "effect/Effect"

/** The `--json` option of every command that prints data. */
export const json = Options.boolean("json").pipe(Options.withDescription("print the answer as JSON (for scripts)"))

/** One JSON document on stdout. */
export const printJson = (value: unknown): Effect.Effect<void> => Console.log(JSON.stringify(value, null, 2))

/** A column: its heading and how a row shows in it (`null` and empty show as `-`). */
export type Column<A> = readonly [heading: string, cell: (row: A) => string | null | undefined]

/** Rows as an aligned table under upper-case headings; `empty` when there are none. */
export const printTable = <A>(
  rows: ReadonlyArray<A>,
  columns: ReadonlyArray<Column<A>>,
  empty: string
): Effect.Effect<void> => {
  if (rows.length === 0) return Console.log(empty)
  const cells = [
    columns.map(([heading]) => heading.toUpperCase()),
    ...rows.map((row) => columns.map(([, cell]) => cell(row) || "-"))
  ]
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)))
  return Console.log(
    cells.map((line) => line.map((cell, i) => i === line.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  "))
      .join("\n")
  )
}
