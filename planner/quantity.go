package planner

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// scaled resolves an int-or-percent against total. Percentages round up
// when roundUp, down otherwise.
func scaled(v *intstr.IntOrString, total int, def int, roundUp bool) (int, error) {
	if v == nil {
		return def, nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return 0, fmt.Errorf("%d is negative", v.IntVal)
		}
		return int(v.IntVal), nil
	}
	s, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok {
		return 0, fmt.Errorf("%q is neither a number nor a percentage like \"10%%\"", v.StrVal)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 100 {
		return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%%", v.StrVal)
	}
	if roundUp {
		return (p*total + 99) / 100, nil
	}
	return p * total / 100, nil
}

// ceilPercent is ceil(p% of n).
func ceilPercent(p int32, n int) int { return (int(p)*n + 99) / 100 }
