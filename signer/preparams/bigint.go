package preparams

import "math/big"

type bigInt = big.Int

func bigOne() *big.Int { return big.NewInt(1) }
