import { assert, describe, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

const src = join(import.meta.dirname, "..", "src")

/** The folders (under src/) that the files of `folder` import from, by relative import. */
const importedFolders = (folder: string): Set<string> => {
  const found = new Set<string>()
  for (const file of readdirSync(join(src, folder), { recursive: true, encoding: "utf8" })) {
    if (!file.endsWith(".ts")) continue
    const text = readFileSync(join(src, folder, file), "utf8")
    for (const match of text.matchAll(/from "\.\.\/([a-z]+)\//g)) found.add(match[1])
  }
  return found
}

describe("the wire contract is its own folder (src/protocol)", () => {
  it("the Neuron's registry client and the registry import the contract, never each other", () => {
    const client = importedFolders("axon")
    const registry = importedFolders("registry")
    assert.isTrue(client.has("protocol"), "src/axon imports src/protocol")
    assert.isTrue(registry.has("protocol"), "src/registry imports src/protocol")
    assert.isFalse(client.has("registry"), "src/axon must not import src/registry")
    assert.isFalse(registry.has("axon"), "src/registry must not import src/axon")
  })

  it("the handshake server and the CareAgent client share the messages from src/protocol, not from each other", () => {
    assert.isTrue(importedFolders("handshake").has("protocol"))
    assert.isTrue(importedFolders("careagent").has("protocol"))
    assert.isFalse(importedFolders("careagent").has("handshake"), "src/careagent must not import src/handshake")
  })

  it("the contract depends on no side of it", () => {
    const protocol = importedFolders("protocol")
    for (const side of ["axon", "registry", "handshake", "careagent", "registration", "api"]) {
      assert.isFalse(protocol.has(side), `src/protocol must not import src/${side}`)
    }
  })
})
