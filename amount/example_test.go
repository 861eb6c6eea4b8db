package amount_test

import (
	"errors"
	"fmt"

	"github.com/custody-dev/custody/amount"
)

func ExampleParseUnits() {
	a, err := amount.ParseUnits("1.5", 18)
	fmt.Println(a, err)
	fmt.Println(a.Format(18))

	_, err = amount.ParseUnits("1.50", 18)
	fmt.Println(errors.Is(err, amount.ErrMalformed), err)
	_, err = amount.ParseUnits("0.000000001", 8)
	fmt.Println(errors.Is(err, amount.ErrTooPrecise), err)
	// Output:
	// 1500000000000000000 <nil>
	// 1.5
	// true amount: malformed: "1.50": trailing zero in the fraction (write "1.5")
	// true amount: too precise: "0.000000001" has 9 fraction digits, the asset has 8 decimals
}
