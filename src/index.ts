/**
 * The public modules of the project, for programs that embed a Neuron, run an Axon registry, or act as a
 * patient's CareAgent. Each is a namespace: `Neuron.layer`, `AxonRegistry.layer`, `CareAgentClient.handshake`, ...
 */
export * as ApiKeys from "./access/ApiKeys.js"
export * as NeuronApi from "./api/NeuronApi.js"
export * as AxonClient from "./axon/AxonClient.js"
export * as AxonError from "./axon/AxonError.js"
export * as CareAgentClient from "./careagent/CareAgentClient.js"
export * as CareAgentKeys from "./careagent/CareAgentKeys.js"
export * as NeuronConfig from "./config/NeuronConfig.js"
export * as ConsentError from "./consent/ConsentError.js"
export * as ConsentVerifier from "./consent/ConsentVerifier.js"
export * as Npi from "./domain/Npi.js"
export * as HandshakeServer from "./handshake/HandshakeServer.js"
export * as NeuronHealth from "./health/NeuronHealth.js"
export * as NodeServer from "./http/NodeServer.js"
export * as Neuron from "./Neuron.js"
export * as AxonApi from "./protocol/AxonApi.js"
export * as RegistrationService from "./registration/RegistrationService.js"
export * as AxonRegistry from "./registry/AxonRegistry.js"
export * as Sqlite from "./sql/Sqlite.js"
export * as StorageUnavailable from "./sql/StorageUnavailable.js"
export * as RegistrationStore from "./store/RegistrationStore.js"
