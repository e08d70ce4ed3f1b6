# Runs under sh (not bash). Parameters arrive only as the SSM_* environment variables (interpolationType ENV_VAR).
umask 077
KEYROTATION_AGENT_B64='@PAYLOAD@'
KEYROTATION_UNPACKER='@UNPACKER@'
py=''
for candidate in python3 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 python3.7 python3.6 /usr/bin/python3 /usr/local/bin/python3 /usr/libexec/platform-python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "@PYTHON_CHECK@" >/dev/null 2>&1; then py=$(command -v "$candidate"); break; fi
done
if [ -z "$py" ]; then
  echo '@RESULT:no_python@'
  exit @EXIT:no_python@
fi
work=$(mktemp -d) || { echo '@RESULT:no_workdir@'; exit @EXIT:no_workdir@; }
trap 'rm -rf "$work"' EXIT
printf '%s' "$KEYROTATION_AGENT_B64" > "$work/agent.b64"
if ! "$py" -c "$KEYROTATION_UNPACKER" "$work/agent.b64" "$work"; then
  echo '@RESULT:no_unpack@'
  exit @EXIT:no_unpack@
fi
"$py" "$work/keyrotation_agent.py" @AGENT_ARGUMENTS@
rc=$?
exit "$rc"
