#!/usr/bin/env node
// Generates the TON test scenarios with the real TON transaction emulator (@ton/sandbox) and writes
// them to tests/fixtures/ton/sandbox/<scenario>.json: every transaction the emulator produced (BoC +
// the values @ton/core decodes from it), the ShardAccount of every touched account after each step,
// and get-method results. Offline: nothing is fetched; the packages are pinned in package.json.
//
//   node devnet/ton-sandbox/generate.mjs           write the scenario files
//   node devnet/ton-sandbox/generate.mjs --check   regenerate in memory; exit 1 naming every file that
//                                                  differs from (or is missing in) tests/fixtures/ton/sandbox
//
// Install the pinned packages first: `npm ci --prefix devnet/ton-sandbox`.
//
// The output depends only on this script and the pinned packages: keys come from fixed seeds
// (sha256 of "chainsync/ton-sandbox/<scenario>/<role>"), the emulator clock is set explicitly
// (1700000000, +5 s per step), the emulator's random seed is fixed (32 zero bytes), wallet message
// timeouts are derived from that clock, and the JSON is written with a fixed key order.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const OUT_DIR = path.join(ROOT, "tests", "fixtures", "ton", "sandbox");
const GENERATOR = "devnet/ton-sandbox/generate.mjs";
const require = createRequire(import.meta.url);

// Packages whose versions are recorded in every file (and must equal the pins in package.json).
const RECORDED = ["@ton/sandbox", "@ton/core", "@ton/crypto", "@ton/ton", "@ton-community/assets-sdk"];

function loadPackages() {
  try {
    return {
      sandbox: require("@ton/sandbox"),
      core: require("@ton/core"),
      crypto: require("@ton/crypto"),
      ton: require("@ton/ton"),
      // Deep imports: the package root also loads its CLI/storage dependencies, which are not needed.
      minter: require("@ton-community/assets-sdk/dist/jetton/JettonMinter.js"),
      jwallet: require("@ton-community/assets-sdk/dist/jetton/JettonWallet.js"),
      mintMsg: require("@ton-community/assets-sdk/dist/jetton/types/JettonMintMessage.js"),
      transferMsg: require("@ton-community/assets-sdk/dist/jetton/types/JettonTransferMessage.js"),
    };
  } catch (err) {
    console.error(
      "the TON packages are not installed: run `npm ci --prefix devnet/ton-sandbox` first (" + err.message + ")",
    );
    process.exit(2);
  }
}

function installedVersions() {
  const pinned = JSON.parse(fs.readFileSync(path.join(HERE, "package.json"), "utf8")).dependencies;
  const versions = {};
  for (const name of RECORDED) {
    const installed = JSON.parse(fs.readFileSync(path.join(HERE, "node_modules", name, "package.json"), "utf8")).version;
    if (pinned[name] !== installed) {
      console.error(`${name} ${installed} is installed but package.json pins ${pinned[name]}: run \`npm ci --prefix devnet/ton-sandbox\``);
      process.exit(2);
    }
    versions[name] = installed;
  }
  return versions;
}

const packages = loadPackages();
const { sandbox, core, crypto, ton } = packages;
const { JettonMinter } = packages.minter;
const { JettonWallet } = packages.jwallet;
const { storeJettonMintMessage } = packages.mintMsg;
const { storeJettonTransferMessage } = packages.transferMsg;
const { Blockchain, LocalBlockchainStorage } = sandbox;
const {
  Address, Cell, Dictionary, beginCell, external, internal, toNano, SendMode,
  loadMessage, loadTransaction, storeMessage, storeShardAccount, storeTransaction,
} = core;
const { WalletContractV4 } = ton;

const START_NOW = 1700000000;
const STEP_SECONDS = 5;
const JETTON = 1_000_000_000n; // 9 decimals
const ZERO_ADDRESS = new Address(0, Buffer.alloc(32));
const WALLET_SEND_MODE = SendMode.PAY_GAS_SEPARATELY + SendMode.IGNORE_ERRORS;

const OP_TRANSFER = 0x0f8a7ea5;
const OP_INTERNAL_TRANSFER = 0x178d4519;
const OP_TRANSFER_NOTIFICATION = 0x7362d09c;
const OP_EXCESSES = 0xd53276db;

// Statistics for the final summary (not written to the files).
const stats = { txReserializeMismatch: 0, msgReserializeMismatch: 0, shardAccountMismatch: 0 };

// ---------------------------------------------------------------------------------------------
// Decoding: the `expected` object of a transaction, in the conventions of tests/fixtures/ton/mainnet.

const hex64 = (v) => v.toString(16).padStart(64, "0");
const dec = (v) => (v === null || v === undefined ? null : v.toString());
const opHex = (op) => "0x" + op.toString(16).padStart(8, "0");

function addr(a) {
  if (a === null || a === undefined) return null;
  if (Address.isAddress(a)) return a.toRawString();
  return `ext:${a.bits}:${a.value.toString(16)}`; // ExternalAddress
}

const STATUS = { uninitialized: "uninit", frozen: "frozen", active: "active", "non-existing": "nonexist" };

// Snake text: every cell holds whole bytes and at most one ref; the bytes must be valid UTF-8.
function snakeText(slice) {
  const chunks = [];
  let s = slice;
  for (;;) {
    if (s.remainingBits % 8 !== 0 || s.remainingRefs > 1) return null;
    chunks.push(s.loadBuffer(s.remainingBits / 8));
    if (s.remainingRefs === 0) break;
    s = s.loadRef().beginParse();
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    return null;
  }
}

// Forward payload (Either Cell ^Cell) of a transfer_notification: a text comment or null.
function payloadComment(s) {
  const payload = s.loadBit() ? s.loadRef().beginParse() : s;
  if (payload.remainingBits < 32 || payload.loadUint(32) !== 0) return null;
  return snakeText(payload);
}

function jettonFields(body) {
  try {
    const s = body.beginParse();
    const op = s.loadUint(32);
    if (op === OP_TRANSFER) {
      const o = { op: "transfer", query_id: dec(s.loadUintBig(64)), amount: dec(s.loadCoins()) };
      o.destination = addr(s.loadAddress());
      o.response_destination = addr(s.loadMaybeAddress());
      s.loadMaybeRef(); // custom_payload
      o.forward_ton_amount = dec(s.loadCoins());
      return o;
    }
    if (op === OP_INTERNAL_TRANSFER) {
      const o = { op: "internal_transfer", query_id: dec(s.loadUintBig(64)), amount: dec(s.loadCoins()) };
      o.from = addr(s.loadMaybeAddress());
      o.response_address = addr(s.loadMaybeAddress());
      o.forward_ton_amount = dec(s.loadCoins());
      return o;
    }
    if (op === OP_TRANSFER_NOTIFICATION) {
      const o = { op: "transfer_notification", query_id: dec(s.loadUintBig(64)), amount: dec(s.loadCoins()) };
      o.sender = addr(s.loadMaybeAddress());
      let comment = null;
      try {
        comment = payloadComment(s);
      } catch {
        comment = null;
      }
      if (comment !== null) o.comment = comment;
      return o;
    }
    if (op === OP_EXCESSES) return { op: "excesses", query_id: dec(s.loadUintBig(64)) };
  } catch {
    return null;
  }
  return null;
}

function messageExpected(cell) {
  const msg = loadMessage(cell.beginParse());
  if (!beginCell().store(storeMessage(msg)).endCell().hash().equals(cell.hash())) stats.msgReserializeMismatch++;
  const info = msg.info;
  const o = { type: info.type, hash: cell.hash().toString("hex") };
  if (info.type === "internal") {
    o.src = addr(info.src);
    o.dest = addr(info.dest);
    o.value = dec(info.value.coins);
    o.extra_currencies = info.value.other ? info.value.other.size : 0;
    o.ihr_disabled = info.ihrDisabled;
    o.bounce = info.bounce;
    o.bounced = info.bounced;
    o.fwd_fee = dec(info.forwardFee);
    o.ihr_fee = dec(info.ihrFee);
    o.created_lt = dec(info.createdLt);
    o.created_at = info.createdAt;
  } else if (info.type === "external-in") {
    o.src = addr(info.src);
    o.dest = addr(info.dest);
    o.import_fee = dec(info.importFee);
  } else {
    o.src = addr(info.src);
    o.dest = addr(info.dest);
    o.created_lt = dec(info.createdLt);
    o.created_at = info.createdAt;
  }
  o.has_state_init = Boolean(msg.init);
  o.body_bits = msg.body.bits.length;
  o.body_refs = msg.body.refs.length;
  if (msg.body.bits.length >= 32) {
    const s = msg.body.beginParse();
    const op = s.loadUint(32);
    o.op = opHex(op);
    if (op === 0) {
      const text = snakeText(s);
      if (text !== null) o.comment = text;
    }
    const jetton = jettonFields(msg.body);
    if (jetton !== null) o.jetton = jetton;
  }
  return o;
}

function storagePhase(p) {
  if (!p) return null;
  return { fees_collected: dec(p.storageFeesCollected), fees_due: dec(p.storageFeesDue), status_change: p.statusChange };
}

function creditPhase(p) {
  if (!p) return null;
  return { due_fees_collected: dec(p.dueFeesColelcted), credit: dec(p.credit.coins) };
}

function computePhase(p) {
  if (p.type === "skipped") return { type: "skipped", skip_reason: p.reason.replace("-", "_") };
  return {
    type: "vm",
    success: p.success,
    msg_state_used: p.messageStateUsed,
    account_activated: p.accountActivated,
    gas_fees: dec(p.gasFees),
    gas_used: dec(p.gasUsed),
    gas_limit: dec(p.gasLimit),
    gas_credit: dec(p.gasCredit),
    mode: p.mode,
    exit_code: p.exitCode,
    exit_arg: p.exitArg ?? null,
    vm_steps: p.vmSteps,
  };
}

function actionPhase(p) {
  if (!p) return null;
  return {
    success: p.success,
    valid: p.valid,
    no_funds: p.noFunds,
    status_change: p.statusChange,
    total_fwd_fees: dec(p.totalFwdFees),
    total_action_fees: dec(p.totalActionFees),
    result_code: p.resultCode,
    result_arg: p.resultArg ?? null,
    tot_actions: p.totalActions,
    spec_actions: p.specActions,
    skipped_actions: p.skippedActions,
    msgs_created: p.messagesCreated,
  };
}

function bouncePhase(p) {
  if (!p) return null;
  const size = (m) => ({ cells: dec(m.cells), bits: dec(m.bits) });
  if (p.type === "ok") return { type: "ok", msg_size: size(p.messageSize), msg_fees: dec(p.messageFees), fwd_fees: dec(p.forwardFees) };
  if (p.type === "no-funds") return { type: "nofunds", msg_size: size(p.messageSize), req_fwd_fees: dec(p.requiredForwardFees) };
  return { type: "negfunds" };
}

function descriptionExpected(d) {
  if (d.type === "generic") {
    return {
      type: "ord",
      credit_first: d.creditFirst,
      aborted: d.aborted,
      destroyed: d.destroyed,
      storage_phase: storagePhase(d.storagePhase),
      credit_phase: creditPhase(d.creditPhase),
      compute_phase: computePhase(d.computePhase),
      action_phase: actionPhase(d.actionPhase),
      bounce_phase: bouncePhase(d.bouncePhase),
    };
  }
  if (d.type === "tick-tock") {
    return {
      type: "tick_tock",
      is_tock: d.isTock,
      aborted: d.aborted,
      destroyed: d.destroyed,
      storage_phase: storagePhase(d.storagePhase),
      compute_phase: computePhase(d.computePhase),
      action_phase: actionPhase(d.actionPhase),
    };
  }
  return { type: d.type };
}

// The message cells exactly as stored in the transaction: ^[in_msg:(Maybe ^Message) out_msgs:(HashmapE 15 ^Message)].
function messageCells(root) {
  const s = root.refs[0].beginParse();
  const inMsg = s.loadBit() ? s.loadRef() : null;
  const out = s.loadDict(Dictionary.Keys.Uint(15), Dictionary.Values.Cell());
  const outMsgs = [...out.keys()].sort((a, b) => a - b).map((k) => out.get(k));
  return { inMsg, outMsgs };
}

function transactionExpected(root) {
  const tx = loadTransaction(root.beginParse());
  const { inMsg, outMsgs } = messageCells(root);
  const inDest = tx.inMessage ? tx.inMessage.info.dest : null;
  if (!Address.isAddress(inDest)) throw new Error("transaction without an internal/external-in destination");
  return {
    account: `${inDest.workChain}:${hex64(tx.address)}`,
    account_workchain_source: "in_msg.dest",
    hash: root.hash().toString("hex"),
    account_addr_hex: hex64(tx.address),
    lt: dec(tx.lt),
    prev_trans_lt: dec(tx.prevTransactionLt),
    prev_trans_hash: hex64(tx.prevTransactionHash),
    now: tx.now,
    outmsg_cnt: tx.outMessagesCount,
    orig_status: STATUS[tx.oldStatus],
    end_status: STATUS[tx.endStatus],
    total_fees: dec(tx.totalFees.coins),
    state_update_old_hash: tx.stateUpdate.oldHash.toString("hex"),
    state_update_new_hash: tx.stateUpdate.newHash.toString("hex"),
    description: descriptionExpected(tx.description),
    in_msg: inMsg ? messageExpected(inMsg) : null,
    out_msgs: outMsgs.map(messageExpected),
  };
}

// ---------------------------------------------------------------------------------------------
// Scenario machinery.

function keyPair(scenario, role) {
  return crypto.keyPairFromSeed(crypto.sha256_sync(`chainsync/ton-sandbox/${scenario}/${role}`));
}

// @ton/sandbox hands the emulator an empty *uninit* account (balance 0) for an address it has not
// seen; the real chain has no account there at all. This storage starts such addresses as
// account_none instead, so first transactions show orig_status "nonexist" as on mainnet.
class NonexistStorage extends LocalBlockchainStorage {
  async getContract(blockchain, address) {
    const known = this.contracts.has(address.toString());
    const contract = await super.getContract(blockchain, address);
    if (!known) contract.account = { account: undefined, lastTransactionHash: 0n, lastTransactionLt: 0n };
    return contract;
  }
}

class Wallet {
  constructor(sc, role) {
    this.sc = sc;
    this.role = role;
    this.keys = keyPair(sc.name, role);
    this.contract = WalletContractV4.create({ workchain: 0, publicKey: this.keys.publicKey });
    this.address = this.contract.address;
    this.seqno = 0;
    this.active = false;
  }

  // A signed external message with `messages` (at most 4); carries the state init while undeployed.
  async transfer(messages) {
    const body = this.contract.createTransfer({
      seqno: this.seqno,
      secretKey: this.keys.secretKey,
      messages,
      sendMode: WALLET_SEND_MODE,
      timeout: this.sc.bc.now + 60,
    });
    this.seqno++;
    const init = this.active ? undefined : this.contract.init;
    this.active = true;
    return this.sc.send(external({ to: this.address, init, body }));
  }
}

class Scenario {
  constructor(name, description) {
    this.name = name;
    this.description = description;
    this.accounts = {};
    this.steps = [];
    this.getMethods = [];
    this.pending = null;
  }

  async init() {
    this.bc = await Blockchain.create({
      config: "default",
      storage: new NonexistStorage(),
      uiOptions: { enabled: false },
    });
    this.bc.verbosity = { print: false, blockchainLogs: false, vmLogs: "none", debugLogs: false };
    this.bc.random = Buffer.alloc(32);
    this.bc.now = START_NOW;
    return this;
  }

  wallet(role, label = role) {
    const w = new Wallet(this, role);
    this.label(label, w.address);
    return w;
  }

  label(label, address) {
    if (label in this.accounts) throw new Error(`duplicate account label ${label}`);
    this.accounts[label] = address.toRawString();
  }

  async send(message) {
    const result = await this.bc.sendMessage(message);
    this.pending.push(...result.transactions);
    return result.transactions;
  }

  // One step: everything `fn` sends is processed at the same emulator time; the clock then moves on.
  async step(label, fn) {
    const now = START_NOW + STEP_SECONDS * this.steps.length;
    this.bc.now = now;
    this.pending = [];
    await fn();
    const txs = this.pending;
    this.pending = null;
    if (txs.length === 0) throw new Error(`step "${label}" produced no transaction`);
    const records = txs.map((tx) => {
      const root = tx.raw;
      if (!beginCell().store(storeTransaction(tx)).endCell().hash().equals(root.hash())) stats.txReserializeMismatch++;
      const boc = root.toBoc();
      const expected = transactionExpected(Cell.fromBoc(boc)[0]);
      return {
        account: expected.account,
        lt: expected.lt,
        hash: expected.hash,
        prev_lt: expected.prev_trans_lt,
        prev_hash: expected.prev_trans_hash,
        now: expected.now,
        boc_base64: boc.toString("base64"),
        expected,
      };
    });
    records.sort((a, b) => {
      const d = BigInt(a.lt) - BigInt(b.lt);
      if (d !== 0n) return d < 0n ? -1 : 1;
      return a.account < b.account ? -1 : a.account > b.account ? 1 : 0;
    });
    const touched = [...new Set(records.map((r) => r.account))].sort();
    const shardAccounts = [];
    for (const raw of touched) {
      const contract = await this.bc.getContract(Address.parseRaw(raw));
      const sa = contract.account;
      const cell = beginCell().store(storeShardAccount(sa)).endCell();
      if (!Cell.fromBase64(contract._account).hash().equals(cell.hash())) stats.shardAccountMismatch++;
      shardAccounts.push({
        address: raw,
        boc_base64: cell.toBoc().toString("base64"),
        status: sa.account ? sa.account.storage.state.type : "nonexist",
        balance: dec(sa.account ? sa.account.storage.balance.coins : 0n),
        last_lt: dec(sa.lastTransactionLt),
        last_hash: hex64(sa.lastTransactionHash),
      });
    }
    this.steps.push({ step: this.steps.length, label, now, transactions: records, shard_accounts: shardAccounts });
    return records;
  }

  // Step 0 of every scenario: the funder wallet is created by an internal message injected from the
  // zero address with the wallet's state init (the emulator has no real source for the first coins).
  async genesis(funder, value) {
    await this.step(`genesis: deploy ${funder.role} wallet with ${fromNano(value)} TON (message injected from the zero address)`, () =>
      this.send(sandbox.internal({
        from: ZERO_ADDRESS,
        to: funder.address,
        value,
        bounce: false,
        stateInit: funder.contract.init,
        createdAt: this.bc.now,
      })),
    );
    funder.active = true;
  }

  // The funder deploys `wallets` by internal messages that carry their state init (up to 4 per external).
  async deployByFunder(funder, wallets, value) {
    for (let i = 0; i < wallets.length; i += 4) {
      const chunk = wallets.slice(i, i + 4);
      await funder.transfer(chunk.map((w) => internal({ to: w.address, value, bounce: false, init: w.contract.init })));
      for (const w of chunk) w.active = true;
    }
  }

  async getMethod(account, method, args) {
    const stack = args.map((a) => {
      if (a.type === "address") return { type: "slice", cell: beginCell().storeAddress(Address.parseRaw(a.value)).endCell() };
      throw new Error(`unsupported argument type ${a.type}`);
    });
    const res = await this.bc.runGetMethod(Address.parseRaw(account), method, stack);
    if (res.exitCode !== 0 && res.exitCode !== 1) throw new Error(`${method} exited with ${res.exitCode}`);
    const result = res.stack.map((item) => {
      if (item.type === "slice" || item.type === "cell") {
        return { type: "address", value: item.cell.beginParse().loadAddress().toRawString() };
      }
      if (item.type === "int") return { type: "int", value: item.value.toString() };
      throw new Error(`unsupported stack item ${item.type}`);
    });
    this.getMethods.push({ account, method, args, result });
    return result;
  }

  toJSON(versions) {
    return {
      scenario: this.name,
      description: this.description,
      generator: GENERATOR,
      versions,
      accounts: this.accounts,
      steps: this.steps,
      get_methods: this.getMethods,
    };
  }
}

function fromNano(v) {
  return core.fromNano(v);
}

function comment(text) {
  return beginCell().storeUint(0, 32).storeStringTail(text).endCell();
}

function assert(cond, what) {
  if (!cond) throw new Error(`scenario check failed: ${what}`);
}

// Finds the single transaction of `account` among `records`.
function txOf(records, account, pred = () => true) {
  const found = records.filter((r) => r.account === account && pred(r.expected));
  assert(found.length === 1, `expected one transaction of ${account}, found ${found.length}`);
  return found[0].expected;
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

async function walletComments() {
  const sc = await new Scenario(
    "wallet_comments",
    "A funder wallet (v4r2) is created at genesis, funds the sender wallet (non-bounceable, no state init, so it stays uninit) and deploys the deposit wallet (v4r2) by an internal message carrying its state init. The sender then makes six separate transfers to the deposit wallet, one per step; the first one's external message carries the sender's state init and deploys it. (a) 1.5 TON 'order-1001', (b) 0.25 TON 'order-1002', (c) 2 TON 'hello' (no 'order-' prefix), (d) 0.1 TON with an empty body, (e) 0.3 TON with a long 'order-1003 ...' comment whose snake string spans 3 cells, (f) 0.2 TON 'order-1004 café ✓' (non-ASCII UTF-8).",
  ).init();
  const funder = sc.wallet("funder");
  const sender = sc.wallet("sender");
  const deposit = sc.wallet("deposit");
  await sc.genesis(funder, toNano("100000"));
  await sc.step("funder sends 10 TON to the undeployed sender wallet (non-bounceable, no state init)", () =>
    funder.transfer([internal({ to: sender.address, value: toNano("10"), bounce: false })]),
  );
  await sc.step("funder deploys the deposit wallet (0.5 TON with state init)", () =>
    sc.deployByFunder(funder, [deposit], toNano("0.5")),
  );
  const long = "order-1003 " + Array.from({ length: 300 }, (_, i) => String.fromCharCode(0x41 + (i % 26))).join("");
  const sends = [
    ["(a) sender deploys itself and sends 1.5 TON 'order-1001'", toNano("1.5"), comment("order-1001")],
    ["(b) sender sends 0.25 TON 'order-1002'", toNano("0.25"), comment("order-1002")],
    ["(c) sender sends 2 TON 'hello'", toNano("2"), comment("hello")],
    ["(d) sender sends 0.1 TON with an empty body", toNano("0.1"), undefined],
    ["(e) sender sends 0.3 TON with a 311-byte 'order-1003 ...' comment (3-cell snake)", toNano("0.3"), comment(long)],
    ["(f) sender sends 0.2 TON 'order-1004 café ✓'", toNano("0.2"), comment("order-1004 café ✓")],
  ];
  for (const [label, value, body] of sends) {
    const records = await sc.step(label, () =>
      sender.transfer([internal({ to: deposit.address, value, bounce: true, body })]),
    );
    const t = txOf(records, deposit.address.toRawString());
    assert(t.in_msg.value === value.toString() && !t.description.aborted, `${label}: deposit credited`);
  }
  const longTx = sc.steps[sc.steps.length - 2].transactions.find((r) => r.account === deposit.address.toRawString());
  assert(longTx.expected.in_msg.comment === long, "long comment decoded");
  return sc;
}

async function jetton() {
  const sc = await new Scenario(
    "jetton",
    "A funder wallet (v4r2) is created at genesis and deploys the admin, jetton_sender and jetton_owner wallets (v4r2). The admin deploys a jetton minter (@ton-community/assets-sdk code, 9 decimals) and mints 1000 jettons to jetton_sender (mint op 21 -> internal_transfer deploying jetton_sender's jetton wallet -> excesses to the admin). jetton_sender then transfers (a) 100 jettons to jetton_owner with forward_ton_amount 0.05 TON and a forward payload comment 'order-2001' (internal_transfer deploys jetton_owner's jetton wallet; a transfer_notification reaches jetton_owner and excesses return to jetton_sender), and (b) 250 jettons with forward_ton_amount 0 and an empty forward payload (no notification; only excesses). get_methods holds the minter's get_wallet_address for jetton_owner and jetton_sender.",
  ).init();
  const funder = sc.wallet("funder");
  const admin = sc.wallet("admin");
  const jsender = sc.wallet("jetton_sender");
  const owner = sc.wallet("jetton_owner");
  await sc.genesis(funder, toNano("100000"));
  await sc.step("funder deploys the admin, jetton_sender and jetton_owner wallets (5 TON each with state init)", () =>
    sc.deployByFunder(funder, [admin, jsender, owner], toNano("5")),
  );
  const content = beginCell().storeUint(1, 8).storeStringTail("https://example.invalid/chainsync-test-jetton.json").endCell();
  const minter = JettonMinter.createFromConfig({ admin: admin.address, content });
  sc.label("jetton_master", minter.address);
  const senderJW = JettonWallet.createFromConfig({ owner: jsender.address, jettonMaster: minter.address });
  const ownerJW = JettonWallet.createFromConfig({ owner: owner.address, jettonMaster: minter.address });
  sc.label("jetton_sender_jetton_wallet", senderJW.address);
  sc.label("jetton_owner_jetton_wallet", ownerJW.address);

  await sc.step("admin deploys the jetton minter (0.1 TON with state init)", () =>
    admin.transfer([internal({ to: minter.address, value: toNano("0.1"), bounce: false, init: minter.init })]),
  );
  const mintBody = beginCell().store(storeJettonMintMessage({
    queryId: 1n,
    amount: 1000n * JETTON,
    from: minter.address,
    to: jsender.address,
    responseAddress: admin.address,
    forwardPayload: null,
    forwardTonAmount: 0n,
    walletForwardValue: toNano("0.03"),
  })).endCell();
  await sc.step("admin mints 1000 jettons to jetton_sender (response: admin)", () =>
    admin.transfer([internal({ to: minter.address, value: toNano("0.1"), bounce: true, body: mintBody })]),
  );
  const transferA = beginCell().store(storeJettonTransferMessage({
    queryId: 2001n,
    amount: 100n * JETTON,
    destination: owner.address,
    responseDestination: jsender.address,
    customPayload: null,
    forwardAmount: toNano("0.05"),
    forwardPayload: comment("order-2001"),
  })).endCell();
  const a = await sc.step("(a) jetton_sender transfers 100 jettons to jetton_owner, forward 0.05 TON, payload 'order-2001'", () =>
    jsender.transfer([internal({ to: senderJW.address, value: toNano("0.15"), bounce: true, body: transferA })]),
  );
  const note = txOf(a, owner.address.toRawString()).in_msg;
  assert(note.jetton && note.jetton.op === "transfer_notification" && note.jetton.comment === "order-2001", "(a) notification with comment");

  // (b) built by hand: op, query_id, amount, destination, response_destination, custom_payload
  // (none), forward_ton_amount 0, forward_payload (inline, empty).
  const transferB = beginCell()
    .storeUint(OP_TRANSFER, 32)
    .storeUint(2002n, 64)
    .storeCoins(250n * JETTON)
    .storeAddress(owner.address)
    .storeAddress(jsender.address)
    .storeBit(0)
    .storeCoins(0n)
    .storeBit(0)
    .endCell();
  const b = await sc.step("(b) jetton_sender transfers 250 jettons to jetton_owner, forward_ton_amount 0, empty payload", () =>
    jsender.transfer([internal({ to: senderJW.address, value: toNano("0.1"), bounce: true, body: transferB })]),
  );
  assert(!b.some((r) => r.account === owner.address.toRawString()), "(b) no notification to jetton_owner");

  for (const w of [owner, jsender]) {
    const [res] = await sc.getMethod(minter.address.toRawString(), "get_wallet_address", [
      { type: "address", value: w.address.toRawString() },
    ]);
    const want = (w === owner ? ownerJW : senderJW).address.toRawString();
    assert(res.value === want, `get_wallet_address(${w.role}) = ${want}`);
  }
  const balance = async (jw) => (await sc.bc.runGetMethod(jw.address, "get_wallet_data", [])).stackReader.readBigNumber();
  assert((await balance(senderJW)) === 650n * JETTON, "jetton_sender keeps 650 jettons");
  assert((await balance(ownerJW)) === 350n * JETTON, "jetton_owner received 350 jettons");
  return sc;
}

async function bounce() {
  const sc = await new Scenario(
    "bounce",
    "A funder wallet (v4r2) is created at genesis and deploys hot_wallet (v4r2). hot_wallet sends 1 TON bounceable (bounce=true) with comment 'order-3001' to bounce_dest, an address that was never deployed (no state init). The step holds three transactions: hot_wallet's (external in, one out message), bounce_dest's (aborted: compute skipped with no_state, bounce phase ok, one bounced message back whose body starts with 0xffffffff) and hot_wallet's receiving the bounced message (bounced=true).",
  ).init();
  const funder = sc.wallet("funder");
  const hot = sc.wallet("hot_wallet");
  const dest = new Wallet(sc, "bounce_dest"); // never deployed: only its address is used
  sc.label("bounce_dest", dest.address);
  await sc.genesis(funder, toNano("100000"));
  await sc.step("funder deploys hot_wallet (10 TON with state init)", () => sc.deployByFunder(funder, [hot], toNano("10")));
  const recs = await sc.step("hot_wallet sends 1 TON bounceable 'order-3001' to the never-deployed bounce_dest", () =>
    hot.transfer([internal({ to: dest.address, value: toNano("1"), bounce: true, body: comment("order-3001") })]),
  );
  assert(recs.length === 3, "bounce step has three transactions");
  const d = txOf(recs, dest.address.toRawString());
  assert(d.description.aborted && d.description.bounce_phase && d.description.bounce_phase.type === "ok", "bounce phase ok");
  assert(d.out_msgs.length === 1 && d.out_msgs[0].bounced && d.out_msgs[0].op === "0xffffffff", "bounced message");
  const back = txOf(recs, hot.address.toRawString(), (e) => e.in_msg.type === "internal");
  assert(back.in_msg.bounced === true, "hot_wallet receives bounced=true");
  return sc;
}

async function nonbounceUninit() {
  const sc = await new Scenario(
    "nonbounce_uninit",
    "A funder wallet (v4r2) is created at genesis and deploys hot_wallet (v4r2). hot_wallet sends 0.7 TON non-bounceable (bounce=false) with comment 'order-4001' to nonbounce_dest, an address that was never deployed. nonbounce_dest's transaction is aborted with compute skipped (no_state), nothing bounces, and the account goes from nonexist to uninit keeping the value.",
  ).init();
  const funder = sc.wallet("funder");
  const hot = sc.wallet("hot_wallet");
  const dest = new Wallet(sc, "nonbounce_dest");
  sc.label("nonbounce_dest", dest.address);
  await sc.genesis(funder, toNano("100000"));
  await sc.step("funder deploys hot_wallet (10 TON with state init)", () => sc.deployByFunder(funder, [hot], toNano("10")));
  const recs = await sc.step("hot_wallet sends 0.7 TON non-bounceable 'order-4001' to the never-deployed nonbounce_dest", () =>
    hot.transfer([internal({ to: dest.address, value: toNano("0.7"), bounce: false, body: comment("order-4001") })]),
  );
  const d = txOf(recs, dest.address.toRawString());
  assert(d.description.aborted && d.description.compute_phase.skip_reason === "no_state", "compute skipped no_state");
  assert(d.orig_status === "nonexist" && d.end_status === "uninit" && d.out_msgs.length === 0, "value stays, uninit");
  return sc;
}

async function outgoing() {
  const sc = await new Scenario(
    "outgoing",
    "A funder wallet (v4r2) is created at genesis and deploys hot_wallet, payee and payee_1..payee_3 (all v4r2). hot_wallet sends 0.4 TON with comment 'payout-1' to payee (a completed outgoing transfer). In a later step one external message of hot_wallet sends three messages at once: 0.1 TON 'payout-2' to payee_1, 0.2 TON 'payout-3' to payee_2 and 0.3 TON 'payout-4' to payee_3.",
  ).init();
  const funder = sc.wallet("funder");
  const hot = sc.wallet("hot_wallet");
  const payee = sc.wallet("payee");
  const payees = [1, 2, 3].map((i) => sc.wallet(`payee_${i}`));
  await sc.genesis(funder, toNano("100000"));
  await sc.step("funder deploys hot_wallet (10 TON with state init)", () => sc.deployByFunder(funder, [hot], toNano("10")));
  await sc.step("funder deploys payee (0.5 TON with state init)", () => sc.deployByFunder(funder, [payee], toNano("0.5")));
  await sc.step("funder deploys payee_1..payee_3 in one external (0.5 TON each with state init)", () =>
    sc.deployByFunder(funder, payees, toNano("0.5")),
  );
  await sc.step("hot_wallet sends 0.4 TON 'payout-1' to payee", () =>
    hot.transfer([internal({ to: payee.address, value: toNano("0.4"), bounce: true, body: comment("payout-1") })]),
  );
  const recs = await sc.step("hot_wallet sends 0.1/0.2/0.3 TON to payee_1..payee_3 in one external message", () =>
    hot.transfer(payees.map((p, i) => internal({
      to: p.address,
      value: toNano("0.1") * BigInt(i + 1),
      bounce: true,
      body: comment(`payout-${i + 2}`),
    }))),
  );
  assert(txOf(recs, hot.address.toRawString()).out_msgs.length === 3, "three out messages");
  return sc;
}

async function manyDeposits() {
  const sc = await new Scenario(
    "many_deposits",
    "A funder wallet (v4r2) is created at genesis and deploys 200 deposit wallets deposit_1000..deposit_1199 (v4r2, keys from role names, 0.05 TON each with state init; 4 messages per external, 20 deploys per step). It then sends each deposit_<n> 1 + (n % 3) deposits with comments 'order-<n>-<k>' (k = 1..3) and value (1 + n % 5) * 0.1 TON + k * 0.001 TON, in rounds k = 1, 2, 3 over n ascending; 4 messages per external and 20 sends per step, all externals of a step processed at the same time.",
  ).init();
  const funder = sc.wallet("funder");
  const deposits = [];
  for (let n = 1000; n < 1200; n++) deposits.push({ n, wallet: sc.wallet(`deposit-${n}`, `deposit_${n}`) });
  await sc.genesis(funder, toNano("100000"));
  for (let i = 0; i < deposits.length; i += 20) {
    const chunk = deposits.slice(i, i + 20).map((d) => d.wallet);
    await sc.step(`funder deploys deposit_${deposits[i].n}..deposit_${deposits[i].n + chunk.length - 1}`, () =>
      sc.deployByFunder(funder, chunk, toNano("0.05")),
    );
  }
  const sends = [];
  for (let k = 1; k <= 3; k++) {
    for (const d of deposits) {
      if (1 + (d.n % 3) >= k) sends.push({ ...d, k });
    }
  }
  for (let i = 0; i < sends.length; i += 20) {
    const chunk = sends.slice(i, i + 20);
    const first = chunk[0];
    const last = chunk[chunk.length - 1];
    await sc.step(`funder sends deposits ${i + 1}..${i + chunk.length} of ${sends.length} (order-${first.n}-${first.k} .. order-${last.n}-${last.k})`, async () => {
      for (let j = 0; j < chunk.length; j += 4) {
        await funder.transfer(chunk.slice(j, j + 4).map((s) => internal({
          to: s.wallet.address,
          value: toNano("0.1") * BigInt(1 + (s.n % 5)) + toNano("0.001") * BigInt(s.k),
          bounce: true,
          body: comment(`order-${s.n}-${s.k}`),
        })));
      }
    });
  }
  return sc;
}

const SCENARIOS = [walletComments, jetton, bounce, nonbounceUninit, outgoing, manyDeposits];

// ---------------------------------------------------------------------------------------------

async function main() {
  const check = process.argv.includes("--check");
  const versions = installedVersions();
  const started = process.hrtime.bigint();
  const files = new Map();
  for (const build of SCENARIOS) {
    const sc = await build();
    files.set(`${sc.name}.json`, JSON.stringify(sc.toJSON(versions), null, 2) + "\n");
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  if (check) {
    const bad = [];
    for (const [name, text] of files) {
      const file = path.join(OUT_DIR, name);
      if (!fs.existsSync(file)) bad.push(`${name}: missing`);
      else if (!fs.readFileSync(file).equals(Buffer.from(text, "utf8"))) bad.push(`${name}: differs`);
    }
    if (fs.existsSync(OUT_DIR)) {
      for (const name of fs.readdirSync(OUT_DIR).sort()) {
        if (name.endsWith(".json") && !files.has(name)) bad.push(`${name}: not produced by the generator`);
      }
    }
    if (bad.length > 0) {
      console.error(`tests/fixtures/ton/sandbox is out of date (run \`node ${GENERATOR}\`):`);
      for (const line of bad) console.error("  " + line);
      process.exit(1);
    }
    console.log(`tests/fixtures/ton/sandbox: ${files.size} scenario files up to date (${seconds.toFixed(1)} s)`);
    return;
  }

  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const [name, text] of files) {
    fs.writeFileSync(path.join(OUT_DIR, name), text);
    console.log(`wrote tests/fixtures/ton/sandbox/${name} (${Buffer.byteLength(text)} bytes)`);
  }
  console.log(
    `generated ${files.size} scenarios in ${seconds.toFixed(1)} s; ` +
      `re-serialized tx cells differing from the emulator's: ${stats.txReserializeMismatch}, ` +
      `message cells: ${stats.msgReserializeMismatch}, shard accounts: ${stats.shardAccountMismatch}`,
  );
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});
