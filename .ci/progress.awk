# progress.awk reads `go test -json` and shows progress: a dot per top-level
# test that passes, a line per package, and the whole output of every test
# that fails (and of a package that fails outside its tests, or to build).

function str(name,    re) {
	re = "\"" name "\":\"([^\"\\\\]|\\\\.)*\""
	if (!match($0, re)) return ""
	return substr($0, RSTART + length(name) + 4, RLENGTH - length(name) - 5)
}

function num(name,    re) {
	re = "\"" name "\":[0-9.]+"
	if (!match($0, re)) return ""
	return substr($0, RSTART + length(name) + 3, RLENGTH - length(name) - 3)
}

function unescape(s) {
	gsub(/\\n/, "\n", s); gsub(/\\t/, "\t", s); gsub(/\\r/, "", s)
	gsub(/\\u003c/, "<", s); gsub(/\\u003e/, ">", s); gsub(/\\u0026/, "\\&", s)
	gsub(/\\"/, "\"", s); gsub(/\\\\/, "\\", s)
	return s
}

{
	action = str("Action"); test = str("Test"); pkg = str("Package")
	key = pkg " " test
	if (action == "build-output") {
		printf "%s", unescape(str("Output"))
		next
	}
	if (action == "output") {
		out[key] = out[key] unescape(str("Output"))
		next
	}
	if (action != "pass" && action != "fail" && action != "skip") next
	if (test == "") {
		if (midline) printf "\n"
		midline = 0
		if (action == "fail") printf "%s", out[key]
		printf "%-4s %s %ss (%d tests)\n", action == "fail" ? "FAIL" : "ok", pkg, num("Elapsed"), dots[pkg]
		delete out[key]
		next
	}
	if (action == "fail") {
		if (midline) printf "\n"
		midline = 0
		printf "%s", out[key]
	} else if (index(test, "/") == 0) {
		printf "."
		midline = 1
		dots[pkg]++
	}
	delete out[key]
	fflush()
}
