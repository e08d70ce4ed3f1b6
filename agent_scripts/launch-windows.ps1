# Parameters arrive only as the SSM_* environment variables (interpolationType ENV_VAR).
$ErrorActionPreference = 'Stop'
$agentB64 = '@PAYLOAD@'
$unpacker = '@UNPACKER@'
$py = $null
foreach ($candidate in @('python3.exe', 'python.exe', 'py.exe')) {
  $cmd = Get-Command $candidate -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
  if ($cmd) { & $cmd.Source -c '@PYTHON_CHECK@' 2>$null | Out-Null; if ($LASTEXITCODE -eq 0) { $py = $cmd.Source; break } }
}
if (-not $py) {
  Write-Output '@RESULT:no_python@'
  exit @EXIT:no_python@
}
$work = Join-Path ([System.IO.Path]::GetTempPath()) ('keyrotation-' + [guid]::NewGuid().ToString('N'))
try { New-Item -ItemType Directory -Path $work | Out-Null } catch { Write-Output '@RESULT:no_workdir@'; exit @EXIT:no_workdir@ }
$code = @EXIT:no_workdir@
try {
  $b64File = Join-Path $work 'agent.b64'
  $agent = Join-Path $work 'keyrotation_agent.py'
  [System.IO.File]::WriteAllText($b64File, $agentB64)
  & $py -c $unpacker $b64File $work
  if ($LASTEXITCODE -ne 0) { Write-Output '@RESULT:no_unpack@'; exit @EXIT:no_unpack@ }
  & $py $agent @AGENT_ARGUMENTS@
  $code = $LASTEXITCODE
} finally {
  Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}
exit $code
