// The fine-tuning guide's data step, done right: turn raw conversations into OpenAI chat JSONL,
// validate it with the real tokenizer, then validate the example data set every later example uses.
//
//   npm install && npx tsx examples/01-prepare-data.ts
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dataset, type ValidationReport, Validator } from "tunekit";

// The guide's raw form: a system prompt and user/assistant turns.
const rawData = [
  {
    system: "You are a helpful customer support agent for TechCorp.",
    turns: [
      {
        user: "My order hasn't arrived yet. Order #12345",
        assistant:
          "I understand your concern about order #12345. Let me check the status for you. I can see your order was shipped on Monday and is currently in transit. Expected delivery is tomorrow by 5 PM. Would you like me to send you the tracking link?",
      },
    ],
  },
  {
    system: "You are a helpful customer support agent for TechCorp.",
    turns: [
      {
        user: "How do I reset my password?",
        assistant:
          "I'd be happy to help you reset your password. Here's how:\n\n1. Go to techcorp.com/login\n2. Click 'Forgot Password'\n3. Enter your email address\n4. Check your inbox for the reset link\n5. Create a new password (at least 8 characters)\n\nThe reset link expires in 24 hours. Let me know if you need any other assistance!",
      },
    ],
  },
];

function show(title: string, report: ValidationReport): void {
  console.log(`\n== ${title}`);
  console.log(
    `${report.examples} examples, ${report.valid} valid, model ${report.model} (${report.tokenizer})`,
  );
  for (const problem of [...report.errors, ...report.warnings]) {
    const where =
      problem.line === undefined ? "" : `line ${problem.line}${problem.path ? ` ${problem.path}` : ""}: `;
    console.log(`  ${problem.severity} ${problem.code}: ${where}${problem.message}`);
  }
  const { totalTokens, assistantTokens } = report.stats;
  console.log(`  tokens per example: ${totalTokens.min}..${totalTokens.max} (median ${totalTokens.median})`);
  console.log(`  assistant tokens per example: median ${assistantTokens.median}`);
  const price =
    report.cost.estimatedUSD === undefined ? "" : `, about $${report.cost.estimatedUSD.toFixed(2)}`;
  console.log(
    `  cost: ${report.cost.billedTokens} tokens × ${report.cost.epochs} epochs = ${report.cost.totalTokens} tokens${price}`,
  );
  console.log(report.ok ? "  OK: ready to upload" : "  NOT READY: fix the errors above");
}

const validator = new Validator({ target: "openai", model: "gpt-4o-mini-2024-07-18" });

// 1. Convert the guide's data to OpenAI's chat format (written to a temporary file, then renamed).
const out = join(await mkdtemp(join(tmpdir(), "tunekit-example-")), "training_data.jsonl");
const { examples } = await Dataset.fromArray(rawData).toJSONL(out, { format: "chat" });
console.log(`wrote ${examples} conversations to ${out}`);

// 2. Validate them: two conversations are fewer than the 10 OpenAI requires.
show("the guide's two conversations", await validator.validate(out));

// 3. The data set the other examples use: 36 TechCorp support conversations.
const supportFile = new URL("./data/customer-support.jsonl", import.meta.url).pathname;
const support = await Dataset.fromFile(supportFile);
show("examples/data/customer-support.jsonl", await validator.validate(support));
console.log(
  "\nby format and kind:",
  await support.stats().then((stats) => ({ formats: stats.formats, kinds: stats.kinds })),
);
