package envelope

import "errors"

func isErr(err, target error) bool {
	var oe *OpenError
	return errors.Is(err, target) && (err == nil || errors.As(err, &oe))
}

func errorsIs(err, target error) bool {
	if target == nil {
		return err == nil
	}
	return errors.Is(err, target)
}
