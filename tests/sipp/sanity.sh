#!/usr/bin/env bash
# SIPp sanity check of the scenarios in this directory: plays each uac
# scenario against its uas counterpart directly on loopback (no switch), and
# a few pairs that must fail, and checks SIPp's exit codes (0 = every call
# succeeded, 1 = at least one failed).
#
# usage: tests/sipp/sanity.sh            (needs sipp, i.e. Debian sip-tester,
#                                          and python3 for check_auth_log.py)
# env:   SIPP=/path/to/sipp  BASE_PORT=15060  BASE_MEDIA_PORT=26000
#        OUT=/some/dir (kept logs)
#        ONLY=regex (run only the checks whose name matches)
set -u
cd "$(dirname "$0")"
SIPP=${SIPP:-sipp}
PORT=${BASE_PORT:-15060}
OUT=${OUT:-$(mktemp -d /tmp/sipp-sanity.XXXXXX)}
mkdir -p "$OUT"
MPORT=${BASE_MEDIA_PORT:-26000}
IP=127.0.0.1
fails=0

# Scenarios that exist only for this check.
sed 's/486 Busy Here/503 Service Unavailable/' uas_486.xml > "$OUT/uas_503.xml"
sed 's/486 Busy Here/408 Request Timeout/' uas_486.xml > "$OUT/uas_408.xml"
sed 's/password=trunkpass/password=wrongpass/' uac_auth_sanity.xml > "$OUT/uac_auth_wrongpass.xml"

# rc_ok WANT RC: WANT is 0 (must succeed), 1 (must fail, any non-zero) or -.
rc_ok() {
    case $1 in
        -) return 0 ;;
        0) [ "$2" -eq 0 ] ;;
        *) [ "$2" -ne 0 ] ;;
    esac
}

# pair NAME UAS UAC CALLS WANT_UAS_RC WANT_UAC_RC [extra uac args...]
# WANT_*_RC: 0, 1 (= must fail) or "-" (don't care).
pair() {
    local name=$1 uas=$2 uac=$3 calls=$4 want_uas=$5 want_uac=$6
    shift 6
    [[ $name =~ ${ONLY:-.} ]] || return 0
    local sp=$PORT cp=$((PORT + 1)) dir="$OUT/$name"
    local uas_f uac_f
    uas_f=$(realpath "$uas") && uac_f=$(realpath "$uac") || exit 2
    local ump=$MPORT cmp=$((MPORT + 10))
    PORT=$((PORT + 2))
    MPORT=$((MPORT + 20))
    mkdir -p "$dir"
    # SIPp binds media ports too (RTP echo, from -mp up): keep them apart.
    (cd "$dir" && exec "$SIPP" -sf "$uas_f" \
        -i $IP -p "$sp" -mp "$ump" -m "$calls" -nostdin \
        -timeout 40s -timeout_error -trace_err -trace_logs >uas.out 2>&1) &
    local uas_pid=$!
    sleep 0.5
    (cd "$dir" && exec "$SIPP" -sf "$uac_f" \
        "$IP:$sp" -i $IP -p "$cp" -mp "$cmp" -m "$calls" -r 10 -nostdin \
        -timeout 40s -timeout_error -trace_err "$@" >uac.out 2>&1)
    local uac_rc=$?
    wait "$uas_pid"
    local uas_rc=$?
    local verdict=ok
    rc_ok "$want_uac" $uac_rc && rc_ok "$want_uas" $uas_rc || verdict=FAIL
    [ $verdict = ok ] || fails=$((fails + 1))
    printf '%-4s %-22s uas=%-3s uac=%-3s (want %s/%s)  %s\n' \
        "$verdict" "$name" "$uas_rc" "$uac_rc" "$want_uas" "$want_uac" "$dir"
}

# auth_log NAME PASSWORD WANT_RC: verify what uas_auth.xml logged.
auth_log() {
    local rc
    [[ $1 =~ ${ONLY:-.} ]] || return 0
    python3 check_auth_log.py "$OUT/$1"/uas_auth_*_logs.log trunkuser "$2" >"$OUT/$1/check.out" 2>&1
    rc=$?
    local verdict=ok
    rc_ok "$3" $rc || verdict=FAIL
    [ $verdict = ok ] || fails=$((fails + 1))
    printf '%-4s %-22s check_auth_log=%s (want %s): %s\n' "$verdict" "$1-digest" "$rc" "$3" \
        "$(tr '\n' ' ' <"$OUT/$1/check.out")"
}

pair basic           uas.xml              uac.xml              10 0 0 -d 1000
pair basic-lost10    uas.xml              uac.xml              30 - 0 -d 200 -lost 10
pair cancel          uas_ring_forever.xml uac_cancel.xml       5  0 0
pair busy            uas_486.xml          uac_expect_486.xml   5  0 0
pair callee-bye      uas_bye.xml          uac_wait_bye.xml     5  0 0
pair unreachable-503 "$OUT/uas_503.xml"   uac_unreachable.xml  3  0 0
pair unreachable-408 "$OUT/uas_408.xml"   uac_unreachable.xml  3  0 0
pair auth-407        uas_auth.xml         uac_auth_sanity.xml  5  0 0 -d 200
auth_log auth-407 trunkpass 0
pair auth-401        uas_auth_www.xml     uac_auth_sanity.xml  5  0 0 -d 200
# Must fail:
pair neg-486-got-200 uas.xml              uac_expect_486.xml   1  - 1 -timeout 5s
pair neg-401-badpass uas_auth_www.xml     "$OUT/uac_auth_wrongpass.xml" 1 1 - -d 200
pair neg-407-badpass uas_auth.xml         "$OUT/uac_auth_wrongpass.xml" 1 - - -d 200
auth_log neg-407-badpass trunkpass 1

echo "logs in $OUT"
if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
