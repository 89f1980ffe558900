"""Writes the Terraform state that applying DIR/main.tf (terraform_data resources from
bench/gen.rs) would leave, in the exact format of a state Terraform itself wrote for a
smaller configuration (TEMPLATE). Used for the 10,000-resource no-op plan: Terraform
rewrites its whole state after every resource it applies, so its own 10,000-resource
apply does not finish in reasonable time on the benchmark machine (>30 minutes).

python3 bench/tfstate.py TEMPLATE_STATE DIR
"""
import copy
import json
import re
import sys
import uuid

template = json.load(open(sys.argv[1]))
tf_dir = sys.argv[2]
main = open(f"{tf_dir}/main.tf").read()
resources = []
# The cty type of `input` follows the body's shape (CRON bodies have more fields), so
# each resource copies the template resource of the same shape: gen.rs makes the shape
# depend on the index modulo 2, 3 and 5, which the template's index repeats.
protos = {r["name"]: r for r in template["resources"]}
count = len(template["resources"])
for name, literal in re.findall(r'resource "terraform_data" "(t\d+)" \{\n  input = jsondecode\(("(?:[^"\\]|\\.)*")\)', main):
    body = json.loads(json.loads(literal))
    r = copy.deepcopy(protos[f"t{int(name[1:]) % count:05}"])
    r["name"] = name
    attrs = r["instances"][0]["attributes"]
    attrs["id"] = str(uuid.uuid4())
    attrs["input"] = {"value": body, "type": attrs["input"]["type"]} if "type" in attrs["input"] else {"value": body}
    attrs["output"] = copy.deepcopy(attrs["input"])
    resources.append(r)
state = dict(template)
state["serial"] = len(resources) + 1
state["lineage"] = str(uuid.uuid4())
state["resources"] = resources
json.dump(state, open(f"{tf_dir}/terraform.tfstate", "w"), indent=2)
print(f"{len(resources)} resources", file=sys.stderr)
