"""The original kv services' side of the DynamoDB table, in Python (boto3 and
`cryptography`), for the drop-in tests: items are written and read exactly
as the originals do, by code quintet did not write.

  write ENDPOINT TABLE KMS_KEY LAYOUT KEY VALUE_FILE
      Encrypts VALUE_FILE's text the originals' way (KMS GenerateDataKey
      AES_256, AES-256-GCM with a random 12-byte iv, no associated data) and
      puts `key`, `value` S = base64(iv || tag || ciphertext) and `data_key`:
        php    — B holding base64_encode(CiphertextBlob), as the Lumen twin's
                 routes/web.php stores it;
        erlang — S = base64(base64(CiphertextBlob)): erlcloud hands the blob
                 over base64-encoded and erlang_grpc_server.erl encodes it again.
  read LAYOUT ENDPOINT TABLE KEY
      Reads the item the way LAYOUT's writer reads it (php: data_key B of
      base64 text of the blob; erlang: S of base64(base64(blob))), unwraps
      the data key with KMS Decrypt, opens the value with AES-256-GCM and no
      associated data, and writes the plaintext to stdout.
  layout ENDPOINT TABLE KEY
      Prints the item's attribute names and types as JSON, e.g.
      {"data_key": "B", "key": "S", "value": "S"}.
  flip ENDPOINT TABLE KEY
      Flips one bit of the ciphertext inside `value`, keeping its encoding.

Credentials and region come from the environment (AWS_ACCESS_KEY_ID, …).
"""

import base64
import json
import os
import sys

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def clients(endpoint):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return (
        boto3.client("dynamodb", endpoint_url=endpoint, region_name=region),
        boto3.client("kms", endpoint_url=endpoint, region_name=region),
    )


def write(endpoint, table, kms_key, layout, key, value_file):
    dynamo, kms = clients(endpoint)
    with open(value_file, encoding="utf-8") as f:
        plaintext = f.read().encode("utf-8")
    generated = kms.generate_data_key(KeyId=kms_key, KeySpec="AES_256")
    iv = os.urandom(12)
    sealed = AESGCM(generated["Plaintext"]).encrypt(iv, plaintext, None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    value = base64.b64encode(iv + tag + ciphertext).decode("ascii")
    blob = generated["CiphertextBlob"]
    if layout == "php":
        data_key = {"B": base64.b64encode(blob)}
    elif layout == "erlang":
        data_key = {"S": base64.b64encode(base64.b64encode(blob)).decode("ascii")}
    else:
        sys.exit(f"unknown layout {layout}")
    dynamo.put_item(
        TableName=table,
        Item={"key": {"S": key}, "value": {"S": value}, "data_key": data_key},
    )


def read(layout_name, endpoint, table, key):
    dynamo, kms = clients(endpoint)
    item = dynamo.get_item(TableName=table, Key={"key": {"S": key}}, ConsistentRead=True)["Item"]
    if layout_name == "php":
        blob = base64.b64decode(item["data_key"]["B"], validate=True)
    else:
        blob = base64.b64decode(base64.b64decode(item["data_key"]["S"], validate=True), validate=True)
    data_key = kms.decrypt(CiphertextBlob=blob)["Plaintext"]
    raw = base64.b64decode(item["value"]["S"])
    iv, tag, ciphertext = raw[:12], raw[12:28], raw[28:]
    plaintext = AESGCM(data_key).decrypt(iv, ciphertext + tag, None)
    sys.stdout.buffer.write(plaintext)


def layout(endpoint, table, key):
    dynamo, _ = clients(endpoint)
    item = dynamo.get_item(TableName=table, Key={"key": {"S": key}}, ConsistentRead=True)["Item"]
    print(json.dumps({name: next(iter(v)) for name, v in sorted(item.items())}))


def flip(endpoint, table, key):
    dynamo, _ = clients(endpoint)
    item = dynamo.get_item(TableName=table, Key={"key": {"S": key}}, ConsistentRead=True)["Item"]
    raw = bytearray(base64.b64decode(item["value"]["S"]))
    raw[-1] ^= 0x01
    item["value"] = {"S": base64.b64encode(bytes(raw)).decode("ascii")}
    dynamo.put_item(TableName=table, Item=item)


def main(argv):
    command, args = argv[1], argv[2:]
    {"write": write, "read": read, "layout": layout, "flip": flip}[command](*args)


if __name__ == "__main__":
    main(sys.argv)
