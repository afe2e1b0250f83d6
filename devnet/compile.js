#!/usr/bin/env node
// Compiles the devnet contracts with the pinned solc package and writes the artifacts the Rust side
// deploys (devnet/artifacts/<ContractName>.json).
//
//   node devnet/compile.js           write the artifacts
//   node devnet/compile.js --check   recompile in memory; exit 1 naming every artifact that differs
//                                    from (or is missing in) devnet/artifacts
//
// The output depends only on the sources and the pinned packages: inputs are sorted, settings are
// fixed, and the JSON is written with a stable key order.
"use strict";

const fs = require("fs");
const path = require("path");

const DEVNET = __dirname;
const CONTRACTS = path.join(DEVNET, "contracts");
const ARTIFACTS = path.join(DEVNET, "artifacts");
const NODE_MODULES = path.join(DEVNET, "node_modules");

// Contracts deployed by `chainsync devnet deploy`, by source unit and name.
const DEPLOYED = [
  ["contracts/TestToken.sol", "TestToken"],
  ["contracts/StreamLockManager.sol", "StreamLockManager"],
  ["contracts/StreamLockManagerV2.sol", "StreamLockManagerV2"],
  ["@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol", "ERC1967Proxy"],
  ["contracts/ProducerStorage.sol", "ProducerStorage"],
  ["contracts/Producer.sol", "Producer"],
  ["contracts/Factory.sol", "Factory"],
];

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

function loadSolc() {
  try {
    return require(path.join(NODE_MODULES, "solc"));
  } catch (err) {
    console.error("solc is not installed: run `npm ci --prefix devnet` first (" + err.message + ")");
    process.exit(2);
  }
}

function listSources(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...listSources(full));
    else if (entry.name.endsWith(".sol")) found.push(full);
  }
  return found;
}

// Source unit names are paths relative to devnet/ with forward slashes, so they (and the metadata
// hash embedded in the bytecode) do not depend on where the checkout lives.
function unitName(file) {
  return path.relative(DEVNET, file).split(path.sep).join("/");
}

function resolveImport(name) {
  const base = name.startsWith("@openzeppelin/") ? NODE_MODULES : DEVNET;
  const file = path.join(base, ...name.split("/"));
  if (!file.startsWith(base + path.sep)) return { error: "import outside the devnet: " + name };
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (err) {
    return { error: "cannot read " + name + ": " + err.message };
  }
}

function compile(solc) {
  const sources = {};
  for (const file of listSources(CONTRACTS).map(unitName).sort()) {
    sources[file] = { content: fs.readFileSync(path.join(DEVNET, file), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: resolveImport }));

  const diagnostics = output.errors || [];
  for (const diagnostic of diagnostics) {
    console.error(diagnostic.formattedMessage || diagnostic.message);
  }
  if (diagnostics.some((d) => d.severity === "error")) {
    console.error("compilation failed");
    process.exit(2);
  }
  if (diagnostics.length > 0) {
    console.error("compilation produced warnings; fix them so the artifacts stay clean");
    process.exit(2);
  }

  const artifacts = new Map();
  for (const [unit, name] of DEPLOYED) {
    const contract = output.contracts && output.contracts[unit] && output.contracts[unit][name];
    if (!contract) {
      console.error("solc produced no output for " + unit + ":" + name);
      process.exit(2);
    }
    const artifact = {
      contractName: name,
      abi: contract.abi,
      bytecode: { object: "0x" + contract.evm.bytecode.object },
      deployedBytecode: { object: "0x" + contract.evm.deployedBytecode.object },
    };
    artifacts.set(name + ".json", JSON.stringify(artifact, null, 2) + "\n");
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const solc = loadSolc();
  const artifacts = compile(solc);

  if (check) {
    const problems = [];
    for (const [file, text] of artifacts) {
      const target = path.join(ARTIFACTS, file);
      if (!fs.existsSync(target)) problems.push("devnet/artifacts/" + file + " is missing");
      else if (fs.readFileSync(target, "utf8") !== text) problems.push("devnet/artifacts/" + file + " differs");
    }
    const existing = fs.existsSync(ARTIFACTS) ? fs.readdirSync(ARTIFACTS) : [];
    for (const file of existing.filter((f) => f.endsWith(".json")).sort()) {
      if (!artifacts.has(file)) problems.push("devnet/artifacts/" + file + " is not produced by any contract");
    }
    if (problems.length > 0) {
      for (const problem of problems) console.error(problem);
      console.error("artifacts are stale: run `node devnet/compile.js` and commit devnet/artifacts");
      process.exit(1);
    }
    console.log("artifacts up to date (" + artifacts.size + " contracts, solc " + solc.version() + ")");
    return;
  }

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const [file, text] of artifacts) {
    fs.writeFileSync(path.join(ARTIFACTS, file), text);
  }
  console.log("wrote " + artifacts.size + " artifacts to devnet/artifacts (solc " + solc.version() + ")");
}

main();
