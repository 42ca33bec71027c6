#!/usr/bin/env bash
# The run step of the GitHub Action (action.yml): `reconciler COMMAND ENV_DIR ARGS...`, with GitHub
# annotations and the job summary. Inputs come as variables, never spliced into this script:
#   COMMAND  the reconciler command (validate, plan, apply, drift, rollout, where, doctor, ...)
#   ENV_DIR  the environment folder, passed right after the command (may be empty)
#   ARGS     more arguments, split as a shell splits words (quotes group; nothing is expanded)
# Outputs: exit-code (the command's) and report (a file with its output). The step fails on exit
# codes other than 0 and 2: 2 is "changes" (plan --detailed-exitcode) or "drift", which the caller
# reads from exit-code.
set -uo pipefail

command=${COMMAND:?give the action a command}
env_dir=${ENV_DIR:-}
extra=()
if [ -n "${ARGS:-}" ]; then
  mapfile -d '' -t extra < <(python3 -c 'import os, shlex, sys
sys.stdout.write("".join(a + "\0" for a in shlex.split(os.environ["ARGS"])))') || {
    echo "::error::edge-reconciler action: cannot split args: $ARGS"
    exit 1
  }
fi

has_format=false
for arg in "${extra[@]}"; do
  case $arg in --format | --format=*) has_format=true ;; esac
done

base=("$command")
if [ -n "$env_dir" ]; then base+=("$env_dir"); fi
# The format the action asks for, unless ARGS names one: then the output is shown as it is.
format=text
if [ "$has_format" = false ]; then
  case $command in
    validate) format=github ;;  # every problem an annotation on its file and line
    plan | drift) format=markdown ;;
  esac
fi
formatted=("${base[@]}")
if [ "$format" != text ]; then formatted+=(--format "$format"); fi
argv=("${formatted[@]}" "${extra[@]}")

report=$(mktemp "${RUNNER_TEMP:-/tmp}/reconciler-$command.XXXXXX")
title="reconciler $command${env_dir:+ \`$env_dir\`}"

# Output other than annotations is printed with workflow commands turned off, so nothing a spec
# holds can act as one.
token="reconciler-$RANDOM$RANDOM$RANDOM"
case $format in
  github)
    reconciler "${argv[@]}"
    code=$?
    : > "$report"
    if [ "$code" = 1 ]; then
      reconciler "${base[@]}" "${extra[@]}" > "$report" 2>&1  # the same check, as plain text
    fi
    ;;
  markdown)
    echo "::stop-commands::$token"
    reconciler "${argv[@]}" > "$report" 2> "$report.err"
    code=$?
    cat "$report.err" >&2
    echo "::$token::"
    if [ "$code" != 0 ] && [ "$code" != 2 ]; then
      format=text  # a failed plan or drift check: its messages, not a half-written report
      cat "$report.err" > "$report"
    fi
    rm -f "$report.err"
    ;;
  *)
    echo "::stop-commands::$token"
    reconciler "${argv[@]}" 2>&1 | tee "$report"
    code=${PIPESTATUS[0]}
    echo "::$token::"
    ;;
esac

case $code in
  0) outcome="succeeded" ;;
  2) outcome="exit code 2 ($command: changes or drift)" ;;
  *) outcome="failed (exit code $code)" ;;
esac
{
  if [ "$format" = github ]; then
    if [ "$code" = 0 ]; then
      echo "### $title: the specs are valid"
    else
      echo "### $title: $outcome"
      echo
      echo "The problems are annotated on their lines (*Files changed* tab):"
      echo
      echo '````text'
      head -c 30000 "$report"
      echo
      echo '````'
    fi
  elif [ "$format" = markdown ]; then
    head -c 500000 "$report"
  else
    echo "### $title: $outcome"
    echo
    echo '````text'
    tail -c 60000 "$report"
    echo
    echo '````'
  fi
} >> "${GITHUB_STEP_SUMMARY:-/dev/null}"

{
  echo "exit-code=$code"
  echo "report=$report"
} >> "${GITHUB_OUTPUT:-/dev/null}"
if [ "$code" = 0 ] || [ "$code" = 2 ]; then exit 0; fi
exit "$code"
