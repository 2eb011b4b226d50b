/**
 * The registry's own settings, given by `AxonRegistry.layer` to the services inside it.
 */
import * as Context from "effect/Context"
import type * as Option from "effect/Option"

/** Where the registry keeps its files and alerts, and the hash of the enrollment token when one is configured. */
export class RegistrySettings extends Context.Tag("neuron/registry/RegistrySettings")<RegistrySettings, {
  /** Folder with `axon.db` and `alerts-YYYYMMDD.jsonl`. */
  readonly dataDir: string
  /** SHA-256 of the enrollment token; `None` is development mode (no enrollment, duplicates are 409). */
  readonly enrollmentHash: Option.Option<Buffer>
  /**
   * True on PostgreSQL: alerts are rows of the shared database, and `GET /alerts` serves them (the files hold
   * only what this instance swept). False on SQLite: the files are the record.
   */
  readonly alertsInDatabase: boolean
}>() {}
