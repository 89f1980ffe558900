#!/usr/bin/env python3
"""Conformance of taskform with Huawei's official Python SDK (issue #26).

Two checks, each against a real client that nobody here wrote:

(a) the SDK's DataArtsStudioClient drives `taskform emulator` with AK/SK through
    create, show, search (each filter), update, stop/run, delete; every answer must
    deserialize into the SDK's response model with the documented fields set, and the
    SDK's own signatures must be accepted (a task ID holding `/`, a query whose
    parameter name is not ASCII);
(b) taskform (apply, update of a scheduled task, prune, refresh, export) talks to a
    verifying proxy that recomputes every request's signature with the SDK's signer,
    records the raw request line and headers (secrets masked), and fails on a
    mismatch or a body-less POST/PUT without Content-Length. The proxy forwards to
    the emulator, so taskform sees a working service.

Usage: sdk_conformance.py --taskform PATH [--log FILE]
Exit 0 when everything conforms; 1 with one line per finding; 2 when the SDK is
missing. Secrets used here are throwaway values; none is printed.
"""

import argparse
import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

try:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions import exceptions as sdk_exceptions
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
    from huaweicloudsdkdataartsstudio.v1 import (
        CreateTaskRequest, DataArtsStudioClient, DeleteTaskInfoRequest,
        ExecuteTaskActionRequest, MetadataCollectionTask, QueryTaskRequest,
        SchedulerInfo, CustomMetadata, ShowTaskInfoRequest, ShowTaskListRequest,
        UpdateTaskInfoRequest)
except ImportError as e:
    print(f"sdk-conformance: Huawei's SDK is not installed ({e}); "
          "pip install -r conformance/requirements.txt", file=sys.stderr)
    sys.exit(2)

PROJECT = "0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d"
WORKSPACE = "demo-workspace"
TOKEN = "taskform-demo-token"
AK = "CONFORMANCEAK0000000"
SK = "conformance-secret-key-not-real"
SECURITY_TOKEN = "conformance-security-token-not-real"
SECRETS = [SK, SECURITY_TOKEN, TOKEN]

findings = []


def finding(msg):
    # One line each, whatever the server put in it; each finding once.
    line = " ".join(str(msg).split())
    if line not in findings:
        findings.append(line)


def masked(text):
    for s in SECRETS:
        text = text.replace(s, "***")
    return text


def start_emulator(taskform):
    env = dict(os.environ, TASKFORM_EMULATOR_ACCESS_KEY=AK,
               TASKFORM_EMULATOR_SECRET_KEY=SK, NO_COLOR="1")
    try:
        proc = subprocess.Popen([taskform, "emulator", "--listen", "127.0.0.1:0",
                                 "--rate-limit", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True)
    except OSError as e:
        raise SystemExit(f"sdk-conformance: cannot run the taskform binary {taskform!r}: {e}")
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"sdk-conformance: the emulator did not start (first line {url!r})")
    return proc, url


# ---------------------------------------------------------------------------
# (a) The SDK drives the emulator.

TASK_FIELDS = ["id", "name", "description", "user_id", "create_time", "project_id", "dir_id",
               "schedule_config", "parameter_config", "update_time", "user_name", "path",
               "data_source_type", "task_config", "duty_person"]


def check_task(what, task, scheduling):
    """A task read back: the documented fields the service fills in are set."""
    if not isinstance(task.schedule_config, SchedulerInfo):
        finding(f"{what}: schedule_config is not a SchedulerInfo")
        return
    for f in TASK_FIELDS:
        if getattr(task, f, None) is None:
            finding(f"{what}: {f} is not set")
    if not isinstance(task.schedule_config.job_id, int):
        finding(f"{what}: schedule_config.job_id is not an integer")
    if scheduling and not task.next_run_time:
        finding(f"{what}: next_run_time is not set on a scheduled task")
    for i, p in enumerate(task.parameter_config or []):
        if not isinstance(p, CustomMetadata) or p.task_id != task.id:
            finding(f"{what}: parameter_config[{i}].task_id is not the task's ID")


def sdk_against_emulator(url):
    creds = BasicCredentials(AK, SK, PROJECT)
    client = DataArtsStudioClient.new_builder().with_credentials(creds) \
        .with_endpoints([url]).build()

    def body(name, schedule, dir_id="0", conn="c0nn3ct10n"):
        return MetadataCollectionTask(
            name=name, user_id="u-1", dir_id=dir_id, data_source_type="DLI",
            description="values with  spaces",
            task_config={"data_connection_name": "dli test", "data_connection_id": conn,
                         "databaseName": ["db 1"]},
            schedule_config=schedule,
            parameter_config=[CustomMetadata(description="Owning team", type="string")])

    def cron():
        return SchedulerInfo(schedule_type="CRON", cron_expression="0 0 2 * * ?", enabled=1,
                             max_time_out=10)

    def call(what, f, req):
        try:
            return f(req)
        except sdk_exceptions.ClientRequestException as e:
            finding(f"(a) {what}: HTTP {e.status_code} {e.error_code}: {e.error_msg}")
        except sdk_exceptions.SdkException as e:
            finding(f"(a) {what}: {type(e).__name__}: {e}")
        return None

    created = call("create", client.create_task, CreateTaskRequest(
        workspace=WORKSPACE, body=body("订单 collection ü", cron())))
    other = call("create", client.create_task, CreateTaskRequest(
        workspace=WORKSPACE, body=body("other task", SchedulerInfo(schedule_type="RUN_ONCE"),
                                       dir_id="dir-7", conn="another")))
    if not created or not other:
        return
    for r in (created, other):
        if not r.task_id:
            finding("(a) create: CreateTaskResponse.task_id is not set")
    tid = created.task_id
    shown = call("show", client.show_task_info, ShowTaskInfoRequest(workspace=WORKSPACE, task_id=tid))
    if shown:
        check_task("(a) show", shown, scheduling=True)
        if shown.name != "订单 collection ü":
            finding("(a) show: the non-ASCII name did not come back")
    whoami = shown.user_name if shown else None
    searches = [
        ("name", QueryTaskRequest(name="订单"), {tid}),
        ("data_source_type", QueryTaskRequest(data_source_type="DLI"), {tid, other.task_id}),
        ("directory_id", QueryTaskRequest(directory_id="dir-7"), {other.task_id}),
        ("user_name", QueryTaskRequest(user_name=whoami), {tid, other.task_id}),
        ("user_name (no match)", QueryTaskRequest(user_name="nobody"), set()),
        ("data_connection_id", QueryTaskRequest(data_connection_id="another"), {other.task_id}),
        ("limit/offset", QueryTaskRequest(limit=1, offset=1), {other.task_id}),
    ]
    for what, q, expected in searches:
        r = call(f"search by {what}", client.show_task_list,
                 ShowTaskListRequest(workspace=WORKSPACE, body=q))
        if r is None:
            continue
        for f in ("count", "total_records", "max_records", "resources"):
            if getattr(r, f) is None:
                finding(f"(a) search by {what}: {f} is not set")
        got = {t.id for t in (r.resources or [])}
        if got != expected:
            finding(f"(a) search by {what}: {len(got)} tasks, expected {len(expected)}")
        for t in r.resources or []:
            check_task(f"(a) search by {what}", t, scheduling=(t.id == tid))
    for action in ("stop",):
        call(f"action {action}", client.execute_task_action,
             ExecuteTaskActionRequest(workspace=WORKSPACE, task_id=tid, action=action))
    changed = body("订单 collection ü", cron())
    changed.schedule_config.max_time_out = 20
    call("update", client.update_task_info,
         UpdateTaskInfoRequest(workspace=WORKSPACE, task_id=tid, body=changed))
    call("action run", client.execute_task_action,
         ExecuteTaskActionRequest(workspace=WORKSPACE, task_id=tid, action="run"))
    shown = call("show after update", client.show_task_info,
                 ShowTaskInfoRequest(workspace=WORKSPACE, task_id=tid))
    if shown and shown.schedule_config.max_time_out != 20:
        finding("(a) update: max_time_out did not change")
    call("action stop", client.execute_task_action,
         ExecuteTaskActionRequest(workspace=WORKSPACE, task_id=tid, action="stop"))
    for t in (tid, other.task_id):
        call("delete", client.delete_task_info, DeleteTaskInfoRequest(workspace=WORKSPACE, task_id=t))
    # A task ID holding `/` (sent as a%2Fb): signed as the SDK signs it, it must reach
    # the service and be named whole in its answer, not be refused with 401.
    try:
        client.show_task_info(ShowTaskInfoRequest(workspace=WORKSPACE, task_id="a/b c"))
        finding("(a) show of task a/b c: found a task that does not exist")
    except sdk_exceptions.ClientRequestException as e:
        if e.status_code == 401:
            finding(f"(a) show of task a/b c: the SDK's signature was refused: {e.error_msg}")
        elif "a/b c" not in (e.error_msg or ""):
            finding(f"(a) show of task a/b c: the answer does not name the decoded ID: {e.error_msg}")
    # A query with a non-ASCII parameter name, signed by the SDK's signer.
    status, text = signed_raw(url, "POST", f"/v3/{PROJECT}/metadata/tasks/nonexistent/action",
                              [("名前", "x y"), ("action", "stop")])
    if status == 401:
        finding(f"(a) a query with a non-ASCII name: the SDK's signature was refused: {text}")


def signed_raw(url, method, path, query):
    host = urllib.parse.urlparse(url).netloc
    req = SdkRequest(method=method, schema="http", host=host, resource_path=path,
                     query_params=query, body="",
                     header_params={"Content-Type": "application/json", "workspace": WORKSPACE,
                                    "X-Project-Id": PROJECT})
    Signer(BasicCredentials(AK, SK, PROJECT)).sign(req)
    conn = http.client.HTTPConnection(host, timeout=10)
    headers = dict(req.header_params)
    headers["Content-Length"] = "0"
    conn.request(method, req.uri, headers=headers)
    r = conn.getresponse()
    return r.status, r.read().decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# (b) taskform against a proxy that verifies with the SDK's signer.

class Verifier(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend = None
    log = []
    checked = [0]

    def log_message(self, *args):
        pass

    def handle_any(self):
        method = self.command
        headers = list(self.headers.items())
        self.log.append(masked(self.requestline) + "\n" + "".join(
            f"  {k}: {masked(v) if k.lower() != 'authorization' else masked(v.rsplit('Signature=', 1)[0]) + 'Signature=…'}\n"
            for k, v in headers))
        length = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked:
            finding(f"(b) {method} {self.path}: Transfer-Encoding: chunked")
            self.send_error(411)
            return
        if length is None and method in ("POST", "PUT"):
            finding(f"(b) {method} {self.path}: no Content-Length on a POST/PUT")
        body = self.rfile.read(int(length)) if length else b""
        self.verify(method, headers, body)
        self.forward(method, body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def verify(self, method, headers, body):
        get = {k.lower(): v for k, v in headers}
        auth = get.get("authorization", "")
        what = f"(b) {method} {self.path}"
        if not auth.startswith("SDK-HMAC-SHA256 "):
            finding(f"{what}: not signed with SDK-HMAC-SHA256")
            return
        try:
            signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
        except IndexError:
            finding(f"{what}: malformed Authorization header")
            return
        for must in ("host", "x-sdk-date", "x-project-id"):
            if must not in signed:
                finding(f"{what}: {must} is not signed")
        if "x-security-token" in get and "x-security-token" not in signed:
            finding(f"{what}: X-Security-Token is sent but not signed")
        missing = [h for h in signed if h not in get]
        if missing:
            finding(f"{what}: signed headers missing: {missing}")
            return
        parsed = urllib.parse.urlsplit(self.path)
        req = SdkRequest(
            method=method, schema="http", host=get["host"], resource_path=parsed.path,
            query_params=urllib.parse.parse_qsl(parsed.query, keep_blank_values=True),
            header_params={h: get[h] for h in signed}, body=body)
        Signer(BasicCredentials(AK, SK)).sign(req)
        if req.header_params.get("Authorization") != auth:
            finding(f"{what}: the SDK's signer computes another signature")
        self.checked[0] += 1

    def forward(self, method, body):
        conn = http.client.HTTPConnection(self.backend, timeout=30)
        conn.request(method, self.path, body=body, headers={
            "X-Auth-Token": TOKEN, "workspace": self.headers.get("workspace", ""),
            "Content-Type": "application/json", "Content-Length": str(len(body))})
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def manifest(name, schedule, extra=""):
    return (f"name: \"{name}\"\ndata_source_type: DLI\ndescription: \"values with  spaces\"\n"
            f"schedule_config:\n{schedule}task_config:\n  data_connection_name: \"dli test\"\n"
            f"  databaseName: [\"db 1\"]\n{extra}")


CRON = "  schedule_type: CRON\n  cron_expression: \"0 0 2 * * ?\"\n  enabled: 1\n  max_time_out: {}\n"
ONCE = "  schedule_type: RUN_ONCE\n  max_time_out: 10\n"


def taskform_against_verifier(taskform, emulator_url):
    Verifier.backend = urllib.parse.urlparse(emulator_url).netloc
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Verifier)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1", "HW_ACCESS_KEY": AK,
           "HW_SECRET_KEY": SK, "HW_SECURITY_TOKEN": SECURITY_TOKEN}
    with tempfile.TemporaryDirectory() as d:
        def write(rel, text):
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)

        def run(*args):
            r = subprocess.run([taskform, *args, "--endpoint", endpoint], cwd=d, env=env,
                               capture_output=True, text=True, timeout=120)
            out = r.stdout + r.stderr
            for s in SECRETS:
                if s in out:
                    finding(f"(b) taskform {args[0]}: a secret appears in the output")
            if r.returncode != 0:
                last = masked(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")
                finding(f"(b) taskform {' '.join(args)}: exit {r.returncode}: {last}")

        write("tasks/taskform.yaml", f"project_id: {PROJECT}\nworkspace: {WORKSPACE}\n"
              "state: ../state/taskform.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n")
        write("tasks/orders.yaml", manifest("订单 采集 ü", CRON.format(10)))
        write("tasks/plain.yaml", manifest("plain task", ONCE,
                                           "parameter_config:\n  - {description: Owning team, type: string}\n"))
        run("apply", "--yes", "tasks")
        write("tasks/orders.yaml", manifest("订单 采集 ü", CRON.format(20)))
        run("apply", "--yes", "tasks")  # a scheduled task: stop, PUT, run
        run("refresh", "tasks")
        run("export", os.path.join(d, "exported"), "--state", os.path.join(d, "state", "export.json"),
            "--project-id", PROJECT, "--workspace", WORKSPACE)
        os.remove(os.path.join(d, "tasks", "orders.yaml"))
        run("apply", "--yes", "--prune", "tasks")  # stop, then delete
    server.shutdown()
    return endpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--taskform", required=True, help="the taskform binary")
    ap.add_argument("--log", help="write the raw request lines and headers taskform sent here")
    a = ap.parse_args()
    started = time.monotonic()
    emu, url = start_emulator(a.taskform)
    try:
        sdk_against_emulator(url)
        taskform_against_verifier(a.taskform, url)
    finally:
        emu.kill()
        emu.wait()
    methods = [entry.split(" ", 1)[0] for entry in Verifier.log]
    for m in ("POST", "PUT", "GET", "DELETE"):
        if m not in methods:
            finding(f"(b) taskform sent no {m} request: the scenario did not run")
    if not any("/action?action=stop" in e for e in Verifier.log) or \
            not any("/action?action=run" in e for e in Verifier.log):
        finding("(b) taskform sent no stop/run action: the update scenario did not run")
    if a.log:
        with open(a.log, "w", encoding="utf-8") as f:
            f.write("\n".join(Verifier.log))
    took = time.monotonic() - started
    if findings:
        for f in findings:
            print(f"sdk-conformance: {f}", file=sys.stderr)
        print(f"sdk-conformance: FAILED, {len(findings)} findings ({took:.1f} s)", file=sys.stderr)
        sys.exit(1)
    print(f"sdk-conformance: ok: the SDK's calls against the emulator, and {Verifier.checked[0]} "
          f"requests of taskform verified by the SDK's signer ({took:.1f} s)")


if __name__ == "__main__":
    main()
