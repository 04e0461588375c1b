# Turns a file into a C array: mt_web_page / mt_web_page_len.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "#include <stddef.h>\nconst unsigned char mt_web_page[] = {${body}0x00};\nconst size_t mt_web_page_len = ${len};\n")
