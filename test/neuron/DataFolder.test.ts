/**
 * A data folder that cannot be written at start (issue 10; PROTOCOL.md section 3): the Neuron as users run it
 * (`node dist/main.js`, a child process) prints one line naming the folder and the reason, and exits non-zero,
 * before it listens or starts the embedded registry. The tests run as root, who may write anywhere permissions
 * allow: the folders here are made unwritable in ways root respects too (a path through a regular file).
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { freePort } from "../support/neuron.js"
import { build, spawnMain } from "../support/process.js"

beforeAll(build)

const cases = [
  [
    "a path through a regular file",
    (tmp: string) => Path.join(tmp, "notes.txt", "data"),
    "a part of its path is a file"
  ],
  ["a regular file where the folder should be", (tmp: string) => Path.join(tmp, "notes.txt"), "it is a file"]
] as const

describe("a data folder that cannot be written at start (pnpm start as a child process)", () => {
  for (const [title, folderOf, reason] of cases) {
    it.scopedLive(
      `${title}: one line on stderr naming the folder and the reason, nothing on stdout, exit code 1`,
      () =>
        Effect.gen(function*() {
          const tmp = yield* Sqlite.makeTempDir("neuron-folder-")
          Fs.writeFileSync(Path.join(tmp, "notes.txt"), "not a folder\n")
          const folder = folderOf(tmp)
          const child = yield* spawnMain({
            NEURON_DATA_DIR: folder,
            NEURON_PORT: String(yield* freePort),
            AXON_PORT: String(yield* freePort)
          })
          const code = yield* child.exit
          const { stderr, stdout } = child.output()
          assert.strictEqual(code, 1)
          const lines = stderr.trimEnd().split("\n")
          assert.strictEqual(lines.length, 1, stderr)
          assert.include(lines[0], `the data folder ${folder} cannot be written`)
          assert.include(lines[0], reason)
          assert.strictEqual(stdout, "", "nothing started: no log line")
          // Nothing was made beside it either (the embedded registry's folder lives inside the data folder).
          assert.deepStrictEqual(Fs.readdirSync(tmp), ["notes.txt"])
        })
    )
  }
})
