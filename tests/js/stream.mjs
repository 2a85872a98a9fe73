// InvokeEndpointWithResponseStream through the JS SDK v3; prints one JSON line:
// {"contentType", "variant", "customAttributes", "requestId", "httpStatusCode", "parts": [utf-8 strings], "error": null | {...}}
// Usage: node stream.mjs <endpoint_url> <endpoint_name> <json body> [--input=<json>]
//        [--touch-on-first-part=<path>]  create <path> once the first PayloadPart has arrived
import { writeFileSync } from "node:fs";
import { InvokeEndpointWithResponseStreamCommand } from "@aws-sdk/client-sagemaker-runtime";
import { describeError, makeClient, parseArgs, printResult } from "./common.mjs";

const { url, endpointName, body, extraInput, flags } = parseArgs(process.argv.slice(2), "stream.mjs");
const touchOnFirstPart = flags["touch-on-first-part"];
const client = makeClient(url);
const result = {
  contentType: null,
  variant: null,
  customAttributes: null,
  requestId: null,
  httpStatusCode: null,
  parts: [],
  error: null,
};

let response;
try {
  response = await client.send(
    new InvokeEndpointWithResponseStreamCommand({
      EndpointName: endpointName,
      ContentType: "application/json",
      Body: new TextEncoder().encode(body),
      ...extraInput,
    }),
  );
} catch (error) {
  result.error = describeError(error, "send");
}

if (response !== undefined) {
  result.contentType = response.ContentType ?? null;
  result.variant = response.InvokedProductionVariant ?? null;
  result.customAttributes = response.CustomAttributes ?? null;
  result.requestId = response.$metadata?.requestId ?? null;
  result.httpStatusCode = response.$metadata?.httpStatusCode ?? null;
  const decoder = new TextDecoder("utf-8");
  try {
    for await (const event of response.Body) {
      if (event.PayloadPart !== undefined) {
        result.parts.push(decoder.decode(event.PayloadPart.Bytes ?? new Uint8Array()));
        if (touchOnFirstPart && result.parts.length === 1) {
          writeFileSync(touchOnFirstPart, "");
        }
      } else {
        // A modeled exception arrives as a thrown error, so anything else is unexpected.
        result.parts.push({ unexpectedEvent: Object.keys(event) });
      }
    }
  } catch (error) {
    result.error = describeError(error, "stream");
  }
}

client.destroy();
printResult(result);
